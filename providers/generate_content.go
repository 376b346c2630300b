package providers

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// generateContent serves Gemini's and Vertex AI's native generateContent
// API, chosen by an override.endpoint whose path ends in :generateContent
// (with {model} standing for the call's model). Every chat protocol is
// translated into it; streams go to :streamGenerateContent?alt=sse.
type generateContent struct {
	name    string
	target  string
	header  http.Header
	options []Option
	tokens  *tokenSource // vertex-ai's service account; nil = auth.header
}

// isGenerateContent tells an endpoint of the native API.
func isGenerateContent(endpoint string) bool {
	u, err := url.Parse(endpoint)
	return err == nil && strings.HasSuffix(u.Path, ":generateContent")
}

func newGenerateContent(name string, c Config, tokens *tokenSource) (Provider, error) {
	u, err := parseEndpoint(c.Endpoint)
	if err != nil {
		return nil, err
	}
	if len(c.Query) > 0 {
		q := u.Query()
		for k, v := range c.Query {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	p := &generateContent{name: name, header: http.Header{}, options: c.Options, tokens: tokens}
	// {model} is escaped by url.String; keep it literal to fill in per call.
	p.target = strings.Replace(u.String(), "%7Bmodel%7D", "{model}", 1)
	for k, v := range c.Header {
		p.header.Set(k, v)
	}
	// Gemini's OpenAI surface takes the key as a bearer token, the native
	// API only as x-goog-api-key: a route moved from one to the other keeps
	// working.
	if tokens == nil && p.header.Get("X-Goog-Api-Key") == "" {
		if key, ok := strings.CutPrefix(p.header.Get("Authorization"), "Bearer "); ok {
			p.header.Del("Authorization")
			p.header.Set("X-Goog-Api-Key", key)
		}
	}
	return p, nil
}

func (p *generateContent) Name() string { return p.name }

func (p *generateContent) Prepare(in Inbound) (*Outbound, error) {
	switch in.Protocol {
	case protocols.Embeddings:
		return nil, badRequest("unsupported_api", "this %s route's endpoint is generateContent, which serves chat only", p.name)
	case protocols.Converse:
		return nil, badRequest("unsupported_api", "Bedrock Converse requests are served by provider bedrock only")
	}
	o, err := translated(in, protocols.Gemini, p.options)
	if err != nil {
		return nil, err
	}
	model := strings.TrimPrefix(o.Model, "google/")
	target := p.target
	if strings.Contains(target, "{model}") {
		if model == "" {
			return nil, badRequest("invalid_body", "generateContent needs a model (options.model on the route, or model in the request)")
		}
		target = strings.Replace(target, "{model}", url.PathEscape(model), 1)
	}
	if o.Stream {
		target = strings.Replace(target, ":generateContent", ":streamGenerateContent", 1)
		target += querySep(target) + "alt=sse"
	}
	o.URL, o.Model = target, model
	return o, nil
}

func (p *generateContent) Authorize(ctx context.Context, req *http.Request) error {
	for k, v := range p.header {
		req.Header[k] = v
	}
	if p.tokens == nil {
		return nil
	}
	tok, err := p.tokens.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

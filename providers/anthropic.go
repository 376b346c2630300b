package providers

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// anthropicVersion is the API version sent when neither the client nor the
// route's auth.header names one; Anthropic refuses calls without it.
const anthropicVersion = "2023-06-01"

// anthropic serves Anthropic's native Messages API. Anthropic clients pass
// through; OpenAI chat and Responses clients are translated.
type anthropic struct {
	target  string
	header  http.Header
	options []Option
}

func newAnthropic(c Config) (Provider, error) {
	p := &anthropic{target: "https://api.anthropic.com/v1/messages", header: http.Header{}, options: c.Options}
	for k, v := range c.Header {
		p.header.Set(k, v)
	}
	if c.Endpoint != "" {
		u, err := parseEndpoint(c.Endpoint)
		if err != nil {
			return nil, err
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/messages"
		}
		p.target = u.String()
	}
	if len(c.Query) > 0 {
		u, _ := url.Parse(p.target)
		q := u.Query()
		for k, v := range c.Query {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		p.target = u.String()
	}
	return p, nil
}

func (p *anthropic) Name() string { return "anthropic" }

func (p *anthropic) Prepare(in Inbound) (*Outbound, error) {
	var o *Outbound
	var err error
	switch in.Protocol {
	case protocols.Messages:
		o, err = native(in, protocols.Anthropic, p.options)
	case protocols.Embeddings:
		return nil, badRequest("unsupported_api", "provider anthropic has no embeddings API")
	default:
		o, err = translated(in, protocols.Anthropic, p.options)
	}
	if err != nil {
		return nil, err
	}
	o.URL = p.target
	return o, nil
}

// Authorize sets the route's key. The client's anthropic-version and
// anthropic-beta pass through (the relay drops them for other protocols);
// a call that names no version gets the one every model accepts.
func (p *anthropic) Authorize(_ context.Context, req *http.Request) error {
	for k, v := range p.header {
		req.Header[k] = v
	}
	if req.Header.Get("Anthropic-Version") == "" {
		req.Header.Set("Anthropic-Version", anthropicVersion)
	}
	return nil
}

package providers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// openAI serves every vendor that speaks the OpenAI wire format. The other
// OpenAI-style vendors are this type with other defaults.
type openAI struct {
	name string
	// targets maps each API this route serves to its upstream URL, auth.query
	// already applied: computed once per conf, looked up per call.
	targets map[API]string
	// fixed is the only API the route serves when override.endpoint names
	// one by its path ("" = decided by the body).
	fixed   API
	header  http.Header
	options []Option
	// usageInStreams reports whether the upstream accepts
	// stream_options.include_usage (old Azure API versions reject it).
	usageInStreams bool
}

// openAIDefaults are the paths every OpenAI-style server uses below its base.
var openAIDefaults = map[API]string{
	Chat:       "https://api.openai.com/v1/chat/completions",
	Embeddings: "https://api.openai.com/v1/embeddings",
	Responses:  "https://api.openai.com/v1/responses",
}

func newOpenAI(c Config) (Provider, error) {
	return buildOpenAI("openai", c, openAIDefaults)
}

// buildOpenAI resolves the route's upstream URLs. defaults maps each API
// the vendor serves to its URL, or only to its path when the vendor has no
// host of its own. An override.endpoint with a path is used as given; one
// with only scheme and host keeps the default paths.
func buildOpenAI(name string, c Config, defaults map[API]string) (*openAI, error) {
	p := &openAI{
		name:           name,
		targets:        map[API]string{},
		header:         http.Header{},
		options:        c.Options,
		usageInStreams: true,
	}
	for k, v := range c.Header {
		p.header.Set(k, v)
	}
	for api, raw := range defaults {
		if !strings.HasPrefix(raw, "/") {
			p.targets[api] = raw
		}
	}
	if c.Endpoint != "" {
		u, err := parseEndpoint(c.Endpoint)
		if err != nil {
			return nil, err
		}
		clear(p.targets)
		switch {
		case u.Path == "" || u.Path == "/":
			for api, raw := range defaults {
				path := raw
				if d, err := url.Parse(raw); err == nil && d.Host != "" {
					path = d.Path
				}
				p.targets[api] = u.Scheme + "://" + u.Host + path + querySuffix(u.RawQuery)
			}
		default:
			p.fixed = apiOfPath(u.Path)
			if p.fixed != "" {
				p.targets[p.fixed] = u.String()
			} else {
				// A custom path (a self-hosted server's own route) serves
				// whatever the client sends.
				p.targets[Chat] = u.String()
				p.targets[Embeddings] = u.String()
			}
		}
	}
	if len(c.Query) > 0 {
		for api, raw := range p.targets {
			u, _ := url.Parse(raw)
			q := u.Query()
			for k, v := range c.Query {
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			p.targets[api] = u.String()
		}
	}
	return p, nil
}

func querySuffix(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// parseEndpoint checks override.endpoint. Its errors never quote the
// value: an endpoint may carry a key in its query, and a conf error reaches
// every client of the route and the log.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &ConfError{Field: "override.endpoint", Msg: "is not a valid URL"}
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ConfError{Field: "override.endpoint", Msg: "must be an absolute http or https URL"}
	}
	if u.User != nil {
		return nil, &ConfError{Field: "override.endpoint", Msg: "credentials in the URL are not allowed; use auth.header or auth.query"}
	}
	return u, nil
}

// apiOfPath tells the API an endpoint path serves, "" when it does not say.
func apiOfPath(path string) API {
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return Chat
	case strings.HasSuffix(path, "/embeddings"):
		return Embeddings
	case strings.HasSuffix(path, "/responses"):
		return Responses
	}
	return ""
}

func (p *openAI) Name() string { return p.name }

func (p *openAI) Prepare(in Inbound) (*Outbound, error) {
	switch in.Protocol {
	case protocols.Messages:
		return p.viaChat(in)
	case protocols.Responses:
		if target, ok := p.targets[Responses]; ok && (p.fixed == "" || p.fixed == Responses) {
			o, err := native(in, protocols.ResponsesUsage, p.options)
			if err != nil {
				return nil, err
			}
			o.API, o.URL = Responses, target
			return o, nil
		}
		return p.viaChat(in)
	case protocols.Converse:
		return nil, badRequest("unsupported_api", "Bedrock Converse requests are served by provider bedrock only")
	}
	return p.prepareOpenAI(in.Body)
}

// viaChat translates a call of another protocol into chat completions.
func (p *openAI) viaChat(in Inbound) (*Outbound, error) {
	target, ok := p.targets[Chat]
	if !ok || (p.fixed != "" && p.fixed != Chat) {
		return nil, badRequest("unsupported_api", "this route's endpoint does not serve chat completions, which %s requests are translated into", in.Protocol)
	}
	o, err := translated(in, protocols.OpenAIChat, p.options)
	if err != nil {
		return nil, err
	}
	o.URL = target
	if o.Stream && !p.usageInStreams {
		o.Body, _ = sjson.DeleteBytes(o.Body, "stream_options")
	}
	return o, nil
}

// prepareOpenAI serves OpenAI chat and embeddings: the relay's fast path,
// no translation, options patched into the client's bytes.
func (p *openAI) prepareOpenAI(body []byte) (*Outbound, error) {
	if err := checkObject(body); err != nil {
		return nil, err
	}
	api, err := p.api(body)
	if err != nil {
		return nil, err
	}
	target, ok := p.targets[api]
	if !ok {
		return nil, badRequest("unsupported_api", "provider %s has no default %s endpoint; set override.endpoint on the route", p.name, api)
	}
	out, err := applyOptions(body, p.options)
	if err != nil {
		return nil, err
	}
	o := &Outbound{API: api, URL: target, Body: out}
	o.Model = gjson.GetBytes(out, "model").String()
	if api == Chat && gjson.GetBytes(out, "stream").Bool() {
		o.Stream = true
		if p.usageInStreams && !gjson.GetBytes(out, "stream_options.include_usage").Bool() {
			o.Body, err = sjson.SetBytes(o.Body, "stream_options.include_usage", true)
			if err != nil {
				return nil, badRequest("invalid_body", "cannot set stream_options.include_usage: %v", err)
			}
			o.UsageAdded = true
		}
	}
	return o, nil
}

// api tells chat from embeddings by the body, and checks it against an
// endpoint that serves only one of them.
func (p *openAI) api(body []byte) (API, error) {
	var api API
	switch {
	case gjson.Get(view(body), "messages").Exists():
		api = Chat
	case gjson.Get(view(body), "input").Exists():
		api = Embeddings
	default:
		return "", badRequest("unsupported_api", `request body has neither "messages" (chat completions) nor "input" (embeddings)`)
	}
	if p.fixed != "" && api != p.fixed {
		return "", badRequest("unsupported_api", "this route's endpoint serves %s, but the request body is a %s request", p.fixed, api)
	}
	return api, nil
}

// checkObject accepts a JSON object whose top-level keys are unique after
// unescaping. A duplicate would beat the route's options: the relay patches
// one occurrence, and providers' decoders keep the last one.
func checkObject(body []byte) error {
	if !gjson.ValidBytes(body) {
		return badRequest("invalid_body", "request body must be a JSON object")
	}
	root := gjson.Parse(view(body))
	if !root.IsObject() {
		return badRequest("invalid_body", "request body must be a JSON object")
	}
	if dup, ok := DuplicateKey(root); ok {
		return badRequest("invalid_body", "request body has the key %q more than once", clipKey(dup))
	}
	// The relay reads include_usage to know whether the client asked for
	// the usage event: a second one would hide a stream's usage.
	if so := root.Get("stream_options"); so.IsObject() {
		if dup, ok := DuplicateKey(so); ok {
			return badRequest("invalid_body", "stream_options has the key %q more than once", clipKey(dup))
		}
	}
	return nil
}

// duplicateKey returns a key that obj has twice (compared unescaped).
func DuplicateKey(obj gjson.Result) (dup string, found bool) {
	// A slice, not a map: bodies have a handful of top-level keys.
	var seen [32]string
	keys := seen[:0]
	obj.ForEach(func(k, _ gjson.Result) bool {
		name := k.String()
		for _, s := range keys {
			if s == name {
				dup, found = name, true
				return false
			}
		}
		keys = append(keys, name)
		return true
	})
	return dup, found
}

func clipKey(k string) string {
	if len(k) > 64 {
		return k[:64] + "..."
	}
	return k
}

// applyOptions overwrites top-level body fields with the conf options in
// one pass: the client's other bytes are copied as sent, each option's value
// replaces the client's (keys are unique: checkObject), and options the
// client did not send are appended. One allocation of the body's size.
func applyOptions(body []byte, options []Option) ([]byte, error) {
	if len(options) == 0 {
		return body, nil
	}
	src := view(body)
	root := gjson.Parse(src)
	if !root.IsObject() {
		return nil, badRequest("invalid_body", "request body must be a JSON object")
	}
	type replace struct {
		start, end int
		raw        []byte
	}
	var spans []replace
	seen := make([]bool, len(options))
	grow, fields := 0, 0
	root.ForEach(func(k, v gjson.Result) bool {
		fields++
		name := k.String()
		for i, o := range options {
			if !seen[i] && o.Key == name {
				start := offsetIn(src, v.Raw)
				spans = append(spans, replace{start, start + len(v.Raw), o.Raw})
				seen[i] = true
				grow += len(o.Raw) - len(v.Raw)
				break
			}
		}
		return true
	})
	var added []Option
	for i, o := range options {
		if !seen[i] {
			added = append(added, o)
			grow += len(o.Key)*2 + 4 + len(o.Raw) // "key": value, (escapes grow it further)
		}
	}
	out := make([]byte, 0, len(body)+grow)
	at := 0
	for _, r := range spans {
		out = append(out, src[at:r.start]...)
		out = append(out, r.raw...)
		at = r.end
	}
	if len(added) == 0 {
		return append(out, src[at:]...), nil
	}
	// Insert the new fields before the object's closing brace.
	end := strings.LastIndexByte(src, '}') // a valid object ends with it, whitespace aside
	out = append(out, src[at:end]...)
	for i, o := range added {
		if i > 0 || fields > 0 {
			out = append(out, ',')
		}
		key, _ := json.Marshal(o.Key)
		out = append(out, key...)
		out = append(out, ':')
		out = append(out, o.Raw...)
	}
	return append(out, src[end:]...), nil
}

func (p *openAI) Authorize(_ context.Context, req *http.Request) error {
	for k, v := range p.header {
		req.Header[k] = v
	}
	return nil
}

// Package providers holds one adapter per LLM vendor. An adapter knows the
// vendor's endpoints, how credentials are attached, and how an OpenAI-style
// request and answer must be reshaped for it.
package providers

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// API is the kind of call a client makes, in OpenAI terms.
type API string

const (
	Chat       API = "chat"
	Embeddings API = "embeddings"
	Responses  API = "responses"
)

// Provider adapts OpenAI-style calls to one vendor.
//
// New builds one Provider per route conf; the relay shares it between every
// call made with that conf, so implementations must be safe for concurrent
// use and must keep no per-call state.
type Provider interface {
	// Name is the conf name ("openai", "vertex-ai"), for logs and errors.
	Name() string
	// Prepare turns a client's call into the upstream call: which API it
	// is, where it goes and with what body, translated when the provider
	// speaks another protocol than the client. Conf options override
	// client fields. It never modifies the body in place. A body this route
	// cannot serve gives an *Error with status 400.
	Prepare(in Inbound) (*Outbound, error)
	// Authorize sets the configured credentials on the outbound request,
	// replacing whatever the client sent. ctx bounds a token fetch.
	Authorize(ctx context.Context, req *http.Request) error
}

// Inbound is a client's call as the relay received it.
type Inbound struct {
	Protocol protocols.Protocol // protocols.Detect's verdict
	Path     string
	Body     []byte
}

// Outbound is one prepared upstream call.
type Outbound struct {
	API   API
	URL   string // includes auth.query parameters
	Body  []byte
	Model string // the model asked of the provider, after conf options
	// Stream is true when the client asked for server-sent events.
	Stream bool
	// UsageAdded is true when Prepare asked the provider for a usage event
	// the client did not ask for; the relay keeps that event to itself.
	UsageAdded bool
	// Parts, when set, replaces Body: the relay sends each part to URL as a
	// call of its own, in parallel (Vertex's gemini-embedding-001 takes one
	// input per call).
	Parts [][]byte
	// Convert, when set, turns the successful answers (one per part, in
	// order; else one) into the OpenAI-shaped body the client gets. The
	// relay then reads answers whole. Error answers are never converted.
	Convert func(answers [][]byte) ([]byte, error)

	// Client and Upstream are the call's wire protocols; "" for OpenAI
	// chat and embeddings on both sides, the relay's fast path.
	Client, Upstream protocols.Protocol
	// Reader, when set, reads the provider's answers (model, usage) in its
	// protocol; Writer, when set too, translates them into the client's
	// protocol, for the request Hub.
	Reader protocols.Upstream
	Writer protocols.Client
	Hub    *protocols.Request
	// EventStream: the provider streams AWS event-stream frames, not
	// server-sent events.
	EventStream bool
}

// Config is the part of an ai-proxy route conf that providers use. The
// plugin has already checked its JSON types.
type Config struct {
	Endpoint     string            // override.endpoint; "" = the vendor default
	Header       map[string]string // auth.header
	Query        map[string]string // auth.query
	Options      []Option          // options, in conf order
	ProviderConf ProviderConf      // provider_conf
	GCP          *GCPAuth          // auth.gcp
	AWS          *AWSAuth          // auth.aws
	Overrides    Overrides         // override.llm_options, override.request_body
}

// Option is one conf `options` entry: a top-level body field and the raw JSON
// value that replaces the client's.
type Option struct {
	Key string
	Raw []byte
}

// ProviderConf holds vendor-specific location settings.
type ProviderConf struct {
	ProjectID string `json:"project_id"`
	Region    string `json:"region"`
}

// GCPAuth is auth.gcp: a service account whose tokens authorize Vertex AI.
type GCPAuth struct {
	ServiceAccountJSON string `json:"service_account_json"`
	ExpireEarlySecs    *int   `json:"expire_early_secs"`
	MaxTTL             *int   `json:"max_ttl"`
}

// ConfError is a problem with a route conf; Field names the conf field.
type ConfError struct {
	Field string
	Msg   string
}

func (e *ConfError) Error() string { return e.Field + ": " + e.Msg }

// Error is a per-call failure with the HTTP status the client should get.
type Error struct {
	Status int
	Code   string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func badRequest(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Msg: fmt.Sprintf(format, args...)}
}

type constructor func(Config) (Provider, error)

var registry = map[string]constructor{
	"openai":            newOpenAI,
	"deepseek":          newDeepSeek,
	"azure-openai":      newAzure,
	"gemini":            newGemini,
	"openai-compatible": newCompatible,
	"vertex-ai":         newVertex,
	"anthropic":         newAnthropic,
	"bedrock":           newBedrock,
	"openrouter":        newOpenRouter,
	"aimlapi":           newAIMLAPI,
}

// Names lists the providers New accepts, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds the adapter for a provider name. Errors are *ConfError.
func New(name string, c Config) (Provider, error) {
	ctor, ok := registry[name]
	if !ok {
		return nil, &ConfError{Field: "provider", Msg: fmt.Sprintf("unknown provider %q, expected one of %s", name, strings.Join(Names(), ", "))}
	}
	p, err := ctor(c)
	if err != nil || c.Overrides.empty() {
		return p, err
	}
	return overridden{p, c.Overrides}, nil
}

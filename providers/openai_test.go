package providers

import (
	"errors"
	"net/http"
	"testing"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

func mustNew(t *testing.T, name string, c Config) Provider {
	t.Helper()
	p, err := New(name, c)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return p
}

// inbound is a client call as the relay sees it on a route of its own path:
// the protocol told by the body.
func inbound(body []byte) Inbound {
	return Inbound{Protocol: protocols.Detect("/anything", http.Header{}, body), Path: "/anything", Body: body}
}

func TestPrepare(t *testing.T) {
	gpt4 := []Option{{Key: "model", Raw: []byte(`"gpt-4"`)}}
	tests := []struct {
		name     string
		provider string
		conf     Config
		body     string
		wantAPI  API
		wantURL  string
		wantBody string // exact upstream body
		wantAdd  bool   // include_usage added for the client
	}{
		{
			name: "options override the client's model", provider: "openai", conf: Config{Options: gpt4},
			body:    `{"model":"openai","messages":[{"role":"user","content":"hi"}]}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions",
			wantBody: `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}`,
		},
		{
			name: "nested client model replaced whole", provider: "openai", conf: Config{Options: gpt4},
			body:    `{"model":{"name":"openai"},"messages":[]}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions",
			wantBody: `{"model":"gpt-4","messages":[]}`,
		},
		{
			name: "options added when absent, other fields untouched", provider: "deepseek", conf: Config{Options: []Option{{Key: "model", Raw: []byte(`"deepseek-chat"`)}, {Key: "temperature", Raw: []byte(`0.2`)}}},
			body:    `{"messages": [ {"role":"user", "content":"x"} ],"top_p":0.95}`,
			wantAPI: Chat, wantURL: "https://api.deepseek.com/chat/completions",
			wantBody: `{"messages": [ {"role":"user", "content":"x"} ],"top_p":0.95,"model":"deepseek-chat","temperature":0.2}`,
		},
		{
			name: "stream asks for usage", provider: "openai", conf: Config{Options: gpt4},
			body:    `{"messages":[],"stream":true}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions",
			wantBody: `{"messages":[],"stream":true,"model":"gpt-4","stream_options":{"include_usage":true}}`, wantAdd: true,
		},
		{
			name: "client's own stream_options kept", provider: "openai",
			body:    `{"messages":[],"stream":true,"stream_options":{"include_obfuscation":false}}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions",
			wantBody: `{"messages":[],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}`, wantAdd: true,
		},
		{
			name: "client asked for usage itself", provider: "openai",
			body:    `{"messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions",
			wantBody: `{"messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "old azure api-version gets no stream_options", provider: "azure-openai",
			conf:    Config{Endpoint: "https://r.openai.azure.com/openai/deployments/gpt-4/chat/completions?api-version=2024-02-15-preview"},
			body:    `{"messages":[],"stream":true}`,
			wantAPI: Chat, wantURL: "https://r.openai.azure.com/openai/deployments/gpt-4/chat/completions?api-version=2024-02-15-preview",
			wantBody: `{"messages":[],"stream":true}`,
		},
		{
			name: "new azure api-version gets usage", provider: "azure-openai",
			conf:    Config{Endpoint: "https://r.openai.azure.com/openai/deployments/gpt-4/chat/completions?api-version=2024-10-21"},
			body:    `{"messages":[],"stream":true}`,
			wantAPI: Chat, wantURL: "https://r.openai.azure.com/openai/deployments/gpt-4/chat/completions?api-version=2024-10-21",
			wantBody: `{"messages":[],"stream":true,"stream_options":{"include_usage":true}}`, wantAdd: true,
		},
		{
			name: "embeddings endpoint with encoding_format option", provider: "openai",
			conf:    Config{Endpoint: "https://api.openai.com/v1/embeddings", Options: []Option{{Key: "model", Raw: []byte(`"text-embedding-3-small"`)}, {Key: "encoding_format", Raw: []byte(`"float"`)}}},
			body:    `{"input":"hello world"}`,
			wantAPI: Embeddings, wantURL: "https://api.openai.com/v1/embeddings",
			wantBody: `{"input":"hello world","model":"text-embedding-3-small","encoding_format":"float"}`,
		},
		{
			name: "openai embeddings without override", provider: "openai",
			body:    `{"input":["a","b"],"model":"text-embedding-3-small"}`,
			wantAPI: Embeddings, wantURL: "https://api.openai.com/v1/embeddings",
			wantBody: `{"input":["a","b"],"model":"text-embedding-3-small"}`,
		},
		{
			name: "gemini defaults", provider: "gemini",
			body:    `{"input":"x"}`,
			wantAPI: Embeddings, wantURL: "https://generativelanguage.googleapis.com/v1beta/openai/embeddings",
			wantBody: `{"input":"x"}`,
		},
		{
			name: "host-only override keeps the default path", provider: "openai",
			conf:    Config{Endpoint: "http://127.0.0.1:8080"},
			body:    `{"messages":[]}`,
			wantAPI: Chat, wantURL: "http://127.0.0.1:8080/v1/chat/completions", wantBody: `{"messages":[]}`,
		},
		{
			name: "compatible server by host only gets the conventional path", provider: "openai-compatible",
			conf:    Config{Endpoint: "http://127.0.0.1:8000"},
			body:    `{"input":"x"}`,
			wantAPI: Embeddings, wantURL: "http://127.0.0.1:8000/v1/embeddings", wantBody: `{"input":"x"}`,
		},
		{
			name: "custom path used as given", provider: "openai-compatible",
			conf:    Config{Endpoint: "http://127.0.0.1:11434/api/v1/generate?x=1"},
			body:    `{"messages":[]}`,
			wantAPI: Chat, wantURL: "http://127.0.0.1:11434/api/v1/generate?x=1", wantBody: `{"messages":[]}`,
		},
		{
			name: "auth.query joins the endpoint's query", provider: "gemini",
			conf:    Config{Query: map[string]string{"key": "AIza"}},
			body:    `{"messages":[]}`,
			wantAPI: Chat, wantURL: "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions?key=AIza", wantBody: `{"messages":[]}`,
		},
		{
			name: "option names are literal, not paths", provider: "openai",
			conf:    Config{Options: []Option{{Key: "a.b", Raw: []byte(`1`)}}},
			body:    `{"messages":[]}`,
			wantAPI: Chat, wantURL: "https://api.openai.com/v1/chat/completions", wantBody: `{"messages":[],"a.b":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.provider, tt.conf)
			in := []byte(tt.body)
			orig := string(in)
			out, err := p.Prepare(inbound(in))
			if err != nil {
				t.Fatal(err)
			}
			if out.API != tt.wantAPI || out.URL != tt.wantURL {
				t.Errorf("api, url = %s, %s; want %s, %s", out.API, out.URL, tt.wantAPI, tt.wantURL)
			}
			if string(out.Body) != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", out.Body, tt.wantBody)
			}
			if out.UsageAdded != tt.wantAdd {
				t.Errorf("UsageAdded = %v", out.UsageAdded)
			}
			if string(in) != orig {
				t.Errorf("client body modified: %s", in)
			}
		})
	}
}

func TestPrepareRejects(t *testing.T) {
	tests := []struct {
		name     string
		provider string
		conf     Config
		body     string
	}{
		{"neither messages nor input", "openai", Config{}, `{"prompt":"x"}`},
		{"not an object", "openai", Config{}, `["x"]`},
		{"not json", "openai", Config{}, `model=gpt-4`},
		{"chat body on an embeddings endpoint", "openai", Config{Endpoint: "https://api.openai.com/v1/embeddings"}, `{"messages":[]}`},
		{"embeddings body on a chat endpoint", "azure-openai", Config{Endpoint: "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"}, `{"input":"x"}`},
		{"deepseek has no embeddings", "deepseek", Config{}, `{"input":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mustNew(t, tt.provider, tt.conf).Prepare(inbound([]byte(tt.body)))
			var pe *Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
				t.Fatalf("err = %v, want a 400 *Error", err)
			}
		})
	}
}

func TestAuthorizeReplacesClientCredentials(t *testing.T) {
	p := mustNew(t, "azure-openai", Config{
		Endpoint: "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
		Header:   map[string]string{"api-key": "route-key"},
	})
	req, _ := http.NewRequest("POST", "https://r.openai.azure.com/", nil)
	req.Header.Set("Api-Key", "client-key")
	if err := p.Authorize(req.Context(), req); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Values("api-key"); len(got) != 1 || got[0] != "route-key" {
		t.Fatalf("api-key = %q", got)
	}
}

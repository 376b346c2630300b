package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

// sameJSON compares two JSON texts by value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("not JSON: %s", got)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %s", want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}

// Each seed example: the exact request the provider received (host, path
// and query, credentials, body) and what the client got back.
func TestSeedProviders(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		route      string // conf/routes/<route>.json
		path       string // client path
		body       string // client body
		host       string // provider host the fake sits at
		wantPath   string // path and query the provider got
		wantHeader [2]string
		wantBody   string // body the provider got, by value
		check      func(t *testing.T, body string)
	}{
		{
			name: "deepseek", route: "deepseek", path: "/anything",
			body: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}]}`,
			host: deepSeekHost, wantPath: "/chat/completions", wantHeader: [2]string{"Authorization", "Bearer " + deepSeekKey},
			wantBody: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"model":"deepseek-chat"}`,
			check: func(t *testing.T, body string) {
				if gjson.Get(body, "choices.0.message.role").String() != "assistant" || !gjson.Get(body, "usage.prompt_cache_hit_tokens").Exists() {
					t.Errorf("client got %s", body)
				}
			},
		},
		{
			name: "azure openai with every sampling parameter", route: "azure-openai", path: "/anything",
			body: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"max_tokens":800,"temperature":0.7,"frequency_penalty":0,"presence_penalty":0,"top_p":0.95,"stop":null}`,
			host: azureHost, wantPath: "/openai/deployments/gpt-4/chat/completions?api-version=2024-02-15-preview", wantHeader: [2]string{"Api-Key", azureKey},
			wantBody: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"max_tokens":800,"temperature":0.7,"frequency_penalty":0,"presence_penalty":0,"top_p":0.95,"stop":null,"model":"gpt-4"}`,
			check: func(t *testing.T, body string) {
				if gjson.Get(body, "choices.0.message.content").String() == "" {
					t.Errorf("client got %s", body)
				}
			},
		},
		{
			name: "gemini chat", route: "gemini", path: "/anything",
			body: `{"messages":[{"role":"system","content":"You are a helpful AI assistant"},{"role":"user","content":"What is the capital of France?"}]}`,
			host: geminiHost, wantPath: "/v1beta/openai/chat/completions", wantHeader: [2]string{"Authorization", "Bearer " + geminiKey},
			wantBody: `{"messages":[{"role":"system","content":"You are a helpful AI assistant"},{"role":"user","content":"What is the capital of France?"}],"model":"gemini-2.5-flash"}`,
			check: func(t *testing.T, body string) {
				if gjson.Get(body, "model").String() != "gemini-2.5-flash" || gjson.Get(body, "object").String() != "chat.completion" {
					t.Errorf("client got %s", body)
				}
			},
		},
		{
			name: "openai embeddings", route: "openai-embeddings", path: "/embeddings",
			body: `{"input":"hello world"}`,
			host: openAIHost, wantPath: "/v1/embeddings", wantHeader: [2]string{"Authorization", "Bearer " + openAIKey},
			wantBody: `{"input":"hello world","model":"text-embedding-3-small","encoding_format":"float"}`,
			check: func(t *testing.T, body string) {
				if gjson.Get(body, "object").String() != "list" || !gjson.Get(body, "data.0.embedding").IsArray() ||
					gjson.Get(body, "usage.prompt_tokens").Int() != 2 || gjson.Get(body, "model").String() != "text-embedding-3-small" {
					t.Errorf("client got %s", body)
				}
			},
		},
		{
			name: "gemini embeddings", route: "gemini-embeddings", path: "/embeddings",
			body: `{"input":["hello world","bonjour"]}`,
			host: geminiHost, wantPath: "/v1beta/openai/embeddings", wantHeader: [2]string{"Authorization", "Bearer " + geminiKey},
			wantBody: `{"input":["hello world","bonjour"],"model":"gemini-embedding-001"}`,
			check: func(t *testing.T, body string) {
				if gjson.Get(body, "data.#").Int() != 2 || gjson.Get(body, "data.1.index").Int() != 1 {
					t.Errorf("client got %s", body)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.putRoute(t, tt.route)
			resp := e.post(t, tt.path, tt.body)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got := e.lastRequest(t, tt.host)
			if pq := got.Path + query(got.RawQuery); got.Host != tt.host || pq != tt.wantPath {
				t.Errorf("provider got %s%s, want %s%s", got.Host, pq, tt.host, tt.wantPath)
			}
			if v := got.Header.Values(tt.wantHeader[0]); len(v) != 1 || v[0] != tt.wantHeader[1] {
				t.Errorf("provider header %s = %q", tt.wantHeader[0], v)
			}
			if !sameJSON(t, got.Body, tt.wantBody) {
				t.Errorf("provider body\n got %s\nwant %s", got.Body, tt.wantBody)
			}
			tt.check(t, body)
		})
	}
	// The runner reached each provider at its real https:// host.
	connects := strings.Join(e.proxy.Connects(), " ")
	for _, host := range []string{deepSeekHost, azureHost, geminiHost, openAIHost} {
		if !strings.Contains(connects, host+":443") {
			t.Errorf("no CONNECT to %s:443 (saw %s)", host, connects)
		}
	}
}

func query(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// The client's untouched fields reach the provider byte for byte: options
// are patched in, the body is not re-encoded.
func TestClientFieldsKeptByteForByte(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "deepseek")
	body := `{"messages": [ {"role": "user", "content": "caf\u00e9 \ud83d\ude00"} ],  "temperature": 1.50, "user": "u-1"}`
	resp := e.post(t, "/anything", body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, readAll(t, resp))
	}
	got := string(e.lastRequest(t, deepSeekHost).Body)
	if !strings.HasPrefix(got, `{"messages": [ {"role": "user", "content": "caf\u00e9 \ud83d\ude00"} ],  "temperature": 1.50, "user": "u-1"`) {
		t.Errorf("provider got %s", got)
	}
}

// openai-compatible: any OpenAI-style server at override.endpoint; here a
// plain-HTTP server on loopback, as vLLM or Ollama would be.
func TestOpenAICompatible(t *testing.T) {
	e := newEnv(t)
	local := fakes.StartProvider(fakes.ProviderOptions{Keys: map[string]string{"Authorization": "Bearer local-key"}})
	defer local.Close()
	route := convertRoute(t, `{"id":"local","uri":"/local/*","methods":["POST"],"plugins":{"ai-proxy":{
		"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer local-key"}},
		"options":{"model":"qwen2.5:7b"},"override":{"endpoint":"`+local.URL+`/v1/chat/completions"}}}}`)
	e.admin(t, "PUT", "/apisix/admin/routes", route)
	resp := e.post(t, "/local/chat", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got, _ := local.Last()
	if got.Path != "/v1/chat/completions" || gjson.GetBytes(got.Body, "model").String() != "qwen2.5:7b" {
		t.Errorf("server got %s %s", got.Path, got.Body)
	}
}

// A body that is neither chat nor embeddings, or the wrong one for the
// route's endpoint, is refused before anything goes upstream.
func TestWrongAPIForRoute(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai-embeddings")
	for _, body := range []string{`{"messages":[{"role":"user","content":"hi"}]}`, `{"prompt":"hi"}`} {
		resp := e.post(t, "/embeddings", body)
		got := readAll(t, resp)
		if resp.StatusCode != 400 || gjson.Get(got, "error.code").String() != "unsupported_api" {
			t.Errorf("%s: %d %s", body, resp.StatusCode, got)
		}
	}
	if n := e.fakes[openAIHost].Count(); n != 0 {
		t.Errorf("provider got %d requests", n)
	}
}

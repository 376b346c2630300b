package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// sameJSON compares two JSON texts by value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	if !json.Valid(got) {
		t.Errorf("not JSON: %s", got)
		return false
	}
	return seeds.SameJSON(got, want)
}

// Each seed example: the exact request the provider received (host, path
// and query, credentials, body) and what the client got back.
func TestSeedProviders(t *testing.T) {
	e := newEnv(t, withServiceAccountEnv)
	for _, tt := range seeds.Examples {
		t.Run(tt.Name, func(t *testing.T) {
			// Examples share URIs: each runs alone, as in the docs.
			id := gjson.Get(e.putRoute(t, tt.Route), "id").String()
			defer e.admin(t, "DELETE", "/apisix/admin/routes/"+id, "")
			resp := e.post(t, tt.Path, tt.Body)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got := e.lastRequest(t, tt.Host)
			if pq := got.Path + query(got.RawQuery); got.Host != tt.Host || pq != tt.WantPath {
				t.Errorf("provider got %s%s, want %s%s", got.Host, pq, tt.Host, tt.WantPath)
			}
			if tt.WantHeader[0] != "" {
				if v := got.Header.Values(tt.WantHeader[0]); len(v) != 1 || v[0] != tt.WantHeader[1] {
					t.Errorf("provider header %s = %q", tt.WantHeader[0], v)
				}
			} else if a := got.Header.Get("Authorization"); !e.token.Valid(strings.TrimPrefix(a, "Bearer ")) {
				t.Errorf("provider got Authorization %q, not a token of the service account", a)
			}
			if !sameJSON(t, got.Body, tt.WantBody) {
				t.Errorf("provider body\n got %s\nwant %s", got.Body, tt.WantBody)
			}
			if msg := tt.Check(body); msg != "" {
				t.Error(msg)
			}
		})
	}
	// The runner reached each provider at its real https:// host.
	connects := strings.Join(e.proxy.Connects(), " ")
	for _, host := range []string{deepSeekHost, azureHost, geminiHost, openAIHost, vertexHost} {
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

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

const seedMathBody = `{
  "messages": [
    { "role": "system", "content": "You are a mathematician" },
    { "role": "user", "content": "What is 1+1?" }
  ]
}`

// The seed's first example, "proxy to OpenAI", as the document shows it:
// the client's request carries no key and no model; the route adds both
// and the answer is OpenAI's.
func TestSeedOpenAI(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")

	resp := e.post(t, "/anything", seedMathBody, "Host", "api.openai.com", "Authorization", "Bearer client-must-not-pass")
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s\n%s", resp.StatusCode, body, e.output.String())
	}
	if gjson.Get(body, "model").String() != "gpt-4-0613" || gjson.Get(body, "choices.0.message.content").String() != "1+1 equals 2." ||
		gjson.Get(body, "choices.0.finish_reason").String() != "stop" {
		t.Errorf("client got %s", body)
	}

	got := e.lastRequest(t, openAIHost)
	if got.Method != "POST" || got.Path != "/v1/chat/completions" || got.Host != openAIHost {
		t.Errorf("provider got %s %s%s", got.Method, got.Host, got.Path)
	}
	if a := got.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer "+openAIKey {
		t.Errorf("provider Authorization = %q", a)
	}
	if got.Header.Get("X-AI-Proxy-Ticket") != "" {
		t.Error("the relay ticket reached the provider")
	}
	if m := gjson.GetBytes(got.Body, "model").String(); m != "gpt-4" {
		t.Errorf("provider got model %q", m)
	}
	if gjson.GetBytes(got.Body, "messages.1.content").String() != "What is 1+1?" {
		t.Errorf("provider got body %s", got.Body)
	}

	// What APISIX's access log reads as $upstream_http_x_llm_*: the usage
	// the provider reported.
	entry := e.lastAccess(t)
	want := map[string]string{
		"X-LLM-Provider": "openai", "X-LLM-Model": "gpt-4-0613", "X-LLM-Request-Model": "gpt-4",
		"X-LLM-Prompt-Tokens":     gjson.Get(body, "usage.prompt_tokens").String(),
		"X-LLM-Completion-Tokens": gjson.Get(body, "usage.completion_tokens").String(),
		"X-LLM-Total-Tokens":      gjson.Get(body, "usage.total_tokens").String(),
	}
	if want["X-LLM-Total-Tokens"] == "" || want["X-LLM-Total-Tokens"] == "0" {
		t.Fatalf("provider reported no usage: %s", body)
	}
	for k, v := range want {
		if g := entry.UpstreamHeader.Get(k); g != v {
			t.Errorf("access log %s = %q, want %q", k, g, v)
		}
	}
	if entry.UpstreamHeader.Get("X-LLM-Time-To-First-Token") == "" {
		t.Error("no time to first token")
	}
}

// Streaming: each event reaches the client as the provider sends it. The
// fake holds the rest of its stream until the client has the first event.
func TestSeedOpenAIStreaming(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	gate := make(chan struct{})
	e.fakes[openAIHost].Script(fakes.Reply{
		Events: []string{
			`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`,
			`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"content":"2"},"finish_reason":null}],"usage":null}`,
			`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
			`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`,
			`[DONE]`,
		},
		Gate: gate,
	})
	resp := e.post(t, "/anything", `{"messages":[{"role":"user","content":"What is 1+1?"}],"stream":true}`)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	firstLine := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		firstLine <- line
	}()
	select {
	case first := <-firstLine:
		if !strings.Contains(first, `"role":"assistant"`) {
			t.Fatalf("first event: %q", first)
		}
	case <-time.After(10 * time.Second):
		close(gate)
		t.Fatal("the first event did not reach the client while the provider was still streaming")
	}
	close(gate) // only now may the provider finish
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), `"content":"2"`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest of stream: %q", rest)
	}
	// The relay asked for usage on the client's behalf and keeps it.
	if strings.Contains(string(rest), `"usage":{`) {
		t.Errorf("client got the usage event it did not ask for: %q", rest)
	}
	got := e.lastRequest(t, openAIHost)
	if !gjson.GetBytes(got.Body, "stream_options.include_usage").Bool() || !gjson.GetBytes(got.Body, "stream").Bool() {
		t.Errorf("provider got %s", got.Body)
	}
}

// The seed's two routes on one URI, told apart by post_arg.model in the
// JSON body (flat and nested).
func TestSeedRoutesByBodyModel(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai-by-model")
	e.putRoute(t, "deepseek-by-model")

	for _, c := range []struct {
		model, host, upstreamModel string
	}{
		{"openai", openAIHost, "gpt-4"},
		{"deepseek", deepSeekHost, "deepseek-chat"},
	} {
		resp := e.post(t, "/anything", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"What is 1+1?"}]}`, c.model))
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("model %s: %d %s", c.model, resp.StatusCode, body)
		}
		if m := gjson.GetBytes(e.lastRequest(t, c.host).Body, "model").String(); m != c.upstreamModel {
			t.Errorf("model %s: %s got model %q", c.model, c.host, m)
		}
	}
	if n := e.fakes[openAIHost].Count(); n != 1 {
		t.Errorf("openai got %d requests", n)
	}

	// Nested: vars on post_arg.model.name.
	e.putRoute(t, "openai-by-model", func(r string) string {
		return strings.Replace(r, `"post_arg.model"`, `"post_arg.model.name"`, 1)
	})
	resp := e.post(t, "/anything", `{"model":{"name":"openai"},"messages":[{"role":"user","content":"What is 1+1?"}]}`)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("nested: %d %s", resp.StatusCode, body)
	}
	if m := gjson.GetBytes(e.lastRequest(t, openAIHost).Body, "model").Raw; m != `"gpt-4"` {
		t.Errorf("nested: openai got model %s", m)
	}

	// No route for another model: APISIX's own 404.
	if resp := e.post(t, "/anything", `{"model":"mistral","messages":[]}`); resp.StatusCode != 404 {
		t.Errorf("unmatched model: %d", resp.StatusCode)
	}
}

// A bad conf answers every request of its route with a JSON error naming
// the field, and nothing reaches a provider.
func TestBadConfStopsTheRoute(t *testing.T) {
	e := newEnv(t)
	route := convertRoute(t, `{"id":"bad","uri":"/bad","methods":["POST"],"plugins":{"ai-proxy":{"provider":"openai","auth":{"header":{"Authorization":"Bearer x"}}}}}`)
	route = strings.Replace(route, `\"auth\":{\"header\":{\"Authorization\":\"Bearer x\"}}`, `\"auth\":{\"header\":{\"Authorization\":7}}`, 1)
	e.admin(t, "PUT", "/apisix/admin/routes", route)
	for range 2 {
		resp := e.post(t, "/bad", seedMathBody)
		body := readAll(t, resp)
		if resp.StatusCode != 500 || gjson.Get(body, "error.param").String() != "auth.header.Authorization" ||
			!strings.Contains(gjson.Get(body, "error.message").String(), "must be a string") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if n := e.fakes[openAIHost].Count(); n != 0 {
		t.Fatalf("provider got %d requests", n)
	}
}

// The relay is no open proxy: without a ticket from this runner nothing is
// forwarded.
func TestRelayRefusesUnticketedRequests(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	for _, ticket := range []string{"", "forged", strings.Repeat("A", 75)} {
		req, _ := http.NewRequest("POST", "http://"+e.relayAddr+"/anything", strings.NewReader(seedMathBody))
		req.Header.Set("Content-Type", "application/json")
		if ticket != "" {
			req.Header.Set("X-AI-Proxy-Ticket", ticket)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || gjson.GetBytes(body, "error.code").String() != "invalid_ticket" {
			t.Errorf("ticket %q: %d %s", ticket, resp.StatusCode, body)
		}
	}
	if n := e.fakes[openAIHost].Count(); n != 0 {
		t.Fatalf("provider got %d requests", n)
	}
}

// Provider errors come back with the provider's status, headers and body.
func TestProviderErrorsPassThrough(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	for _, c := range []struct {
		status int
		header http.Header
		body   string
	}{
		{401, nil, `{"error":{"message":"Incorrect API key provided: sk-...abcd.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{429, http.Header{"Retry-After": {"20"}, "X-Ratelimit-Remaining-Requests": {"0"}}, `{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
		{500, nil, `{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`},
	} {
		h := http.Header{"Content-Type": {"application/json"}}
		for k, v := range c.header {
			h[k] = v
		}
		e.fakes[openAIHost].Script(fakes.Reply{Status: c.status, Header: h, Body: c.body})
		resp := e.post(t, "/anything", seedMathBody)
		body := readAll(t, resp)
		if resp.StatusCode != c.status || body != c.body {
			t.Errorf("%d: client got %d %s", c.status, resp.StatusCode, body)
		}
		for k := range c.header {
			if resp.Header.Get(k) != c.header.Get(k) {
				t.Errorf("%d: header %s = %q", c.status, k, resp.Header.Get(k))
			}
		}
	}
}

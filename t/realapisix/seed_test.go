package realapisix_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/realapisix"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

const seedMathBody = `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}`

// Every seed example on real APISIX: what the provider received (host,
// path, credentials, body), what the client got back, and the access-log
// line nginx wrote with the format of conf/config.yaml.
func TestSeedExamples(t *testing.T) {
	l := newLane(t)
	tests := append([]seeds.Example(nil), seeds.Examples...)
	tests = append(tests, seeds.Example{
		Name: "openai-compatible local model", Route: "openai-compatible", Path: "/local/v1/chat/completions", Body: seedMathBody,
		WantPath: "/v1/chat/completions", WantHeader: [2]string{"Authorization", "Bearer " + localKey},
		WantBody: `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}],"model":"qwen2.5:7b"}`,
		Check: func(b string) string {
			if gjson.Get(b, "choices.0.message.content").String() == "" {
				return "client got " + b
			}
			return ""
		},
	})
	type loggedCall struct {
		name, route, callID string
		want                map[string]string
	}
	var logged []loggedCall
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			fake := l.local
			edit := func(r string) string { return r }
			if tt.Host != "" {
				fake = l.fakes[tt.Host]
			} else {
				// The seed's local server is 127.0.0.1:11434; the fake
				// listens elsewhere.
				edit = func(r string) string {
					return strings.Replace(r, "http://127.0.0.1:11434", fake.URL, 1)
				}
			}
			l.resetRoutes(t)
			l.putRoute(t, tt.Route, edit)
			resp, body := l.post(t, tt.Path, tt.Body, "Authorization", "Bearer client-must-not-pass")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got, ok := fake.Last()
			if !ok {
				t.Fatal("the provider received nothing")
			}
			pq := got.Path
			if got.RawQuery != "" {
				pq += "?" + got.RawQuery
			}
			if pq != tt.WantPath || tt.Host != "" && got.Host != tt.Host {
				t.Errorf("provider got %s%s, want %s%s", got.Host, pq, tt.Host, tt.WantPath)
			}
			if tt.WantHeader[0] != "" {
				if v := got.Header.Values(tt.WantHeader[0]); len(v) != 1 || v[0] != tt.WantHeader[1] {
					t.Errorf("provider header %s = %q", tt.WantHeader[0], v)
				}
			}
			if tt.Host == vertexHost {
				if a := got.Header.Get("Authorization"); !l.token.Valid(strings.TrimPrefix(a, "Bearer ")) {
					t.Errorf("vertex got Authorization %q, not a token of the service account", a)
				}
			}
			if got.Header.Get("X-AI-Proxy-Ticket") != "" {
				t.Error("the relay ticket reached the provider")
			}
			if !seeds.SameJSON(got.Body, tt.WantBody) {
				t.Errorf("provider body\n got %s\nwant %s", got.Body, tt.WantBody)
			}
			if msg := tt.Check(body); msg != "" {
				t.Error(msg)
			}

			// APISIX's real access log, joined to the call log by call id;
			// read once for all examples below (nginx flushes it every 3 s).
			callID := resp.Header.Get("X-LLM-Call-Id")
			if callID == "" {
				t.Fatal("no X-LLM-Call-Id")
			}
			usage := gjson.Get(body, "usage")
			logged = append(logged, loggedCall{name: tt.Name, route: tt.Route, callID: callID, want: map[string]string{
				"status": "200", "upstream_status": "200", "uri": tt.Path, "method": "POST",
				"llm_prompt_tokens": usage.Get("prompt_tokens").String(),
				"llm_total_tokens":  usage.Get("total_tokens").String(),
			}})
		})
	}
	for _, c := range logged {
		t.Run("access log of "+c.name, func(t *testing.T) {
			entry := l.accessEntry(t, "llm_call_id", c.callID)
			call := l.callByID(t, c.callID)
			c.want["llm_provider"] = call.Get("provider").String()
			c.want["llm_model"] = call.Get("model").String()
			c.want["llm_completion_tokens"] = call.Get("completion_tokens").String()
			for k, v := range c.want {
				if entry[k] != v {
					t.Errorf("access log %s = %q, want %q (line %v)", k, entry[k], v, entry)
				}
			}
			if entry["llm_provider"] == "" || entry["llm_ttft_ms"] == "" || entry["request_id"] == "" {
				t.Errorf("access log misses LLM fields: %v", entry)
			}
			if c.want["llm_total_tokens"] == "" && c.name != "gemini embeddings" {
				t.Error("no usage: only Gemini's OpenAI-compatible embeddings answer without one")
			}
			if call.Get("route_id").String() != gjson.Get(l.routeJSON(t, c.route), "id").String() {
				t.Errorf("call log route_id = %q", call.Get("route_id").String())
			}
		})
	}
	// The runner reached each provider at its real https:// host.
	connects := strings.Join(l.proxy.Connects(), " ")
	for _, host := range []string{openAIHost, deepSeekHost, azureHost, geminiHost, vertexHost} {
		if !strings.Contains(connects, host+":443") {
			t.Errorf("no CONNECT to %s:443 (saw %s)", host, connects)
		}
	}
	if n := l.token.Calls(); n != 1 {
		t.Errorf("%d service-account token requests for two Vertex routes, want 1 (cached)", n)
	}
}

// routeJSON is a conf/routes file as loaded (ids only are read from it).
func (l *lane) routeJSON(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../conf/routes/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The client's model is replaced by the route's options (the seed's
// "options overwrite" rule), and the client's own credentials never pass.
func TestSeedOptionsOverwrite(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai")
	resp, body := l.post(t, "/anything", `{"model":"gpt-3.5-turbo","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer sk-client")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := l.lastRequest(t, openAIHost)
	if m := gjson.GetBytes(got.Body, "model").String(); m != "gpt-4" {
		t.Errorf("provider got model %q, the route's options say gpt-4", m)
	}
	if a := got.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer "+openAIKey {
		t.Errorf("provider Authorization = %q", a)
	}
	entry := l.accessEntry(t, "llm_call_id", resp.Header.Get("X-LLM-Call-Id"))
	if entry["llm_request_model"] != "gpt-3.5-turbo" || entry["llm_model"] != "gpt-4-0613" {
		t.Errorf("access log models: %v", entry)
	}
}

// Streaming through nginx with its proxy buffering on: each event reaches
// the client while the provider still holds the rest.
func TestSeedStreamEventByEvent(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai")
	gates := []chan struct{}{make(chan struct{}), make(chan struct{})}
	events := []string{
		`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`,
		`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"content":"2"},"finish_reason":null}],"usage":null}`,
		`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
		`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`,
		`[DONE]`,
	}
	l.fakes[openAIHost].Script(fakes.Reply{Events: events, Gates: map[int]<-chan struct{}{1: gates[0], 2: gates[1]}})
	req, _ := http.NewRequest("POST", l.DataURL+"/anything", strings.NewReader(`{"messages":[{"role":"user","content":"What is 1+1?"}],"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	s := readStream(resp.Body)
	if first := s.next(t, 10*time.Second); !strings.Contains(first, `"role":"assistant"`) {
		t.Fatalf("first event %q", first)
	}
	close(gates[0]) // the provider sends the second event only now
	if second := s.next(t, 10*time.Second); !strings.Contains(second, `"content":"2"`) {
		t.Fatalf("second event %q", second)
	}
	close(gates[1])
	rest := s.rest()
	if !strings.HasSuffix(rest, "data: [DONE]\n\n") || strings.Contains(rest, `"usage":{`) {
		t.Errorf("rest of the stream %q", rest)
	}
	// Stream usage is in the call log; the access log has provider, models
	// and time to first token, and empty token fields.
	id := resp.Header.Get("X-LLM-Call-Id")
	call := l.callByID(t, id)
	if call.Get("total_tokens").Int() != 10 || call.Get("prompt_tokens").Int() != 9 || !call.Get("stream").Bool() {
		t.Errorf("call log %s", call.Raw)
	}
	entry := l.accessEntry(t, "llm_call_id", id)
	if entry["llm_provider"] != "openai" || entry["llm_model"] != "gpt-4-0613" || entry["llm_ttft_ms"] == "" || entry["llm_total_tokens"] != "" {
		t.Errorf("stream access log line %v", entry)
	}
}

// The seed's two routes on one URI told apart by post_arg.model, flat and
// nested. APISIX added post_arg.* for JSON bodies in 3.14; before, such a
// route never matches and APISIX answers 404 (README, compatibility).
func TestSeedRoutesByBodyModel(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai-by-model")
	l.putRoute(t, "deepseek-by-model")
	if !realapisix.AtLeast(l.Version, 3, 14) {
		resp, body := l.post(t, "/anything", `{"model":"openai","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 404 {
			t.Fatalf("APISIX %s matched post_arg.model on a JSON body: %d %s", l.Version, resp.StatusCode, body)
		}
		return
	}
	for _, c := range []struct{ model, host, upstreamModel string }{
		{"openai", openAIHost, "gpt-4"},
		{"deepseek", deepSeekHost, "deepseek-chat"},
	} {
		resp, body := l.post(t, "/anything", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"What is 1+1?"}]}`, c.model))
		if resp.StatusCode != 200 {
			t.Fatalf("model %s: %d %s", c.model, resp.StatusCode, body)
		}
		if m := gjson.GetBytes(l.lastRequest(t, c.host).Body, "model").String(); m != c.upstreamModel {
			t.Errorf("model %s: %s got model %q", c.model, c.host, m)
		}
	}
	if n := l.fakes[openAIHost].Count(); n != 1 {
		t.Errorf("openai got %d requests", n)
	}
	l.putRoute(t, "openai-by-model", func(r string) string {
		return strings.Replace(r, `"post_arg.model"`, `"post_arg.model.name"`, 1)
	})
	resp, body := l.post(t, "/anything", `{"model":{"name":"openai"},"messages":[{"role":"user","content":"What is 1+1?"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("nested: %d %s", resp.StatusCode, body)
	}
	if m := gjson.GetBytes(l.lastRequest(t, openAIHost).Body, "model").Raw; m != `"gpt-4"` {
		t.Errorf("nested: openai got model %s", m)
	}
	if resp, _ := l.post(t, "/anything", `{"model":"mistral","messages":[]}`); resp.StatusCode != 404 {
		t.Errorf("unmatched model: %d", resp.StatusCode)
	}
}

// A bad conf: the client gets the runner's JSON error naming the field
// (APISIX passes the Stop through, not an nginx HTML page), and nothing
// reaches a provider; the relay refuses what did not come through a route.
func TestSeedBadConfAndClosedRelay(t *testing.T) {
	l := newLane(t)
	route := `{"uri":"/bad","methods":["POST"],"plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy","value":"{\"provider\":\"openai\",\"auth\":{\"header\":{\"Authorization\":7}}}"}]}},"upstream_id":"ai-proxy-relay"}`
	l.putRouteJSON(t, "bad", route)
	for range 2 {
		resp, body := l.post(t, "/bad", seedMathBody)
		if resp.StatusCode != 500 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			gjson.Get(body, "error.param").String() != "auth.header.Authorization" {
			t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if n := l.fakes[openAIHost].Count(); n != 0 {
		t.Fatalf("provider got %d requests", n)
	}
	l.putRoute(t, "openai")
	for _, ticket := range []string{"", "forged"} {
		req, _ := http.NewRequest("POST", "http://"+l.relayAddr+"/anything", strings.NewReader(seedMathBody))
		if ticket != "" {
			req.Header.Set("X-AI-Proxy-Ticket", ticket)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || gjson.GetBytes(b, "error.code").String() != "invalid_ticket" {
			t.Errorf("ticket %q: %d %s", ticket, resp.StatusCode, b)
		}
	}
	// A client cannot bring its own ticket through APISIX either: the
	// Rewrite replaces it, and the request is served normally.
	resp, body := l.post(t, "/anything", seedMathBody, "X-AI-Proxy-Ticket", "forged")
	if resp.StatusCode != 200 {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if n := l.fakes[openAIHost].Count(); n != 1 {
		t.Fatalf("provider got %d requests", n)
	}
}

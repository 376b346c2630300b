package realapisix_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// ai-proxy-multi on real APISIX: the docs-style route of
// conf/routes/openai-deepseek-multi.json falls back from OpenAI's 429 to
// DeepSeek, the access log names the instance and the attempts, and a
// chash route keyed on the APISIX consumer keeps each consumer on one
// instance.
func TestMultiOnRealAPISIX(t *testing.T) {
	l := newLane(t)
	l.resetRoutes(t)
	l.putRoute(t, "openai-deepseek-multi")
	openai := l.fakes[seeds.OpenAIHost]

	call := func(want int, hdr ...string) (map[string]string, string) {
		t.Helper()
		resp, body := l.post(t, "/multi", seedMathBody, hdr...)
		if resp.StatusCode != want {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		id := resp.Header.Get("X-LLM-Call-Id")
		return l.accessEntry(t, "llm_call_id", id), id
	}

	acc, _ := call(200)
	if acc["llm_instance"] != "openai-instance" || acc["llm_attempts"] != "1" || acc["llm_provider"] != "openai" {
		t.Fatalf("access log: %v", acc)
	}

	openai.Script(fakes.Reply{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`})
	acc, id := call(200)
	if acc["llm_instance"] != "deepseek-instance" || acc["llm_attempts"] != "2" || acc["llm_fallback_reason"] != "http_429" ||
		acc["llm_provider"] != "deepseek" || acc["llm_request_model"] != "deepseek-chat" {
		t.Fatalf("access log: %v", acc)
	}
	if r := l.lastRequest(t, seeds.DeepSeekHost); r.Header.Get("Authorization") != "Bearer "+seeds.DeepSeekKey || gjson.GetBytes(r.Body, "model").String() != "deepseek-chat" {
		t.Fatalf("deepseek got %v %s", r.Header, r.Body)
	}
	entry := l.callByID(t, id)
	if entry.Get("attempts.#").Int() != 2 || entry.Get("attempts.0.instance").String() != "openai-instance" || entry.Get("attempts.0.status").Int() != 429 {
		t.Fatalf("call log: %s", entry.Raw)
	}
	// OpenAI cools for its 20 s: every nginx worker sees that at once (one
	// breaker per node), so the next calls go straight to DeepSeek.
	before := openai.Count()
	for range 6 {
		if acc, _ := call(200); acc["llm_instance"] != "deepseek-instance" || acc["llm_attempts"] != "1" {
			t.Fatalf("access log: %v", acc)
		}
	}
	if openai.Count() != before {
		t.Fatalf("a cooling instance was called %d times", openai.Count()-before)
	}

	// chash on the consumer: key-auth names the consumer, the pre-req
	// filter asks APISIX for $consumer_name.
	for _, c := range []string{"jack", "jill", "joe", "ann"} {
		code, b, err := l.Admin("PUT", "/apisix/admin/consumers", []byte(`{"username":"`+c+`","plugins":{"key-auth":{"key":"`+c+`-key"}}}`))
		if err != nil || code/100 != 2 {
			t.Fatalf("consumer %s: %d %v %s", c, code, err, b)
		}
	}
	route := `{"id":"sticky","uri":"/sticky","methods":["POST"],"plugins":{"key-auth":{},"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy-multi","value":` +
		jsonString(`{"balancer":{"algorithm":"chash","hash_on":"consumer"},"instances":[`+
			`{"name":"a","provider":"openai-compatible","weight":1,"auth":{"header":{"Authorization":"Bearer `+localKey+`"}},"override":{"endpoint":"`+l.local.URL+`/a/v1/chat/completions"}},`+
			`{"name":"b","provider":"openai-compatible","weight":1,"auth":{"header":{"Authorization":"Bearer `+localKey+`"}},"override":{"endpoint":"`+l.local.URL+`/b/v1/chat/completions"}}]}`) +
		`}]}},"upstream_id":"ai-proxy-relay"}`
	l.putRouteJSON(t, "sticky", route)
	seen := map[string]bool{}
	for _, c := range []string{"jack", "jill", "joe", "ann"} {
		first := ""
		for range 4 {
			resp, body := l.post(t, "/sticky", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "apikey", c+"-key")
			got := resp.Header.Get("X-LLM-Instance")
			if resp.StatusCode != 200 || got == "" || first != "" && got != first {
				t.Fatalf("%s: %d %q after %q: %s", c, resp.StatusCode, got, first, body)
			}
			first = got
		}
		seen[first] = true
	}
	// APISIX names the authenticated consumer to the upstream in
	// X-Consumer-Username since 3.x releases of 2024; before, every call
	// falls back to the client's address, as APISIX's own chash does.
	want := 2
	if strings.HasPrefix(l.Version, "3.2.") {
		want = 1
	}
	if len(seen) != want {
		// The four names are known to split over two equal instances.
		t.Fatalf("APISIX %s: consumers used %v, want %d instances", l.Version, seen, want)
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

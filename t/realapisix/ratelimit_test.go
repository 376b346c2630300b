package realapisix_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/redisserver"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// ai-rate-limiting on real APISIX: the docs-style route of
// conf/routes/openai-rate-limited.json (ai-proxy plus ai-rate-limiting,
// 300 prompt tokens per 30 s) limits as documented, the quota headers
// reach the client through nginx, and a per-consumer rule keeps one
// consumer's spending from touching another's.
func TestRateLimitingOnRealAPISIX(t *testing.T) {
	l := newLane(t)
	l.resetRoutes(t)
	l.putRoute(t, "openai-rate-limited")
	openai := l.fakes[seeds.OpenAIHost]

	const remaining = "X-AI-RateLimit-Remaining-ai-proxy-openai"
	last, calls := 301, 0
	for ; ; calls++ {
		resp, body := l.post(t, "/limited", seedMathBody)
		if resp.StatusCode == 503 {
			if resp.Header.Get(remaining) != "0" || resp.Header.Get("X-AI-RateLimit-Limit-ai-proxy-openai") != "300" ||
				gjson.Get(body, "error.code").String() != "rate_limited" {
				t.Fatalf("refusal: %v %s", resp.Header, body)
			}
			acc := l.accessEntry(t, "llm_call_id", resp.Header.Get("X-LLM-Call-Id"))
			if acc["status"] != "503" {
				t.Fatalf("access log: %v", acc)
			}
			break
		}
		if resp.StatusCode != 200 || calls > 100 {
			t.Fatalf("call %d: %d %s", calls, resp.StatusCode, body)
		}
		rem, err := strconv.Atoi(resp.Header.Get(remaining))
		if err != nil || rem >= last {
			t.Fatalf("remaining %q after %d", resp.Header.Get(remaining), last)
		}
		last = rem
		// The provider got the route's options, the budget its prompt only.
		if r := l.lastRequest(t, seeds.OpenAIHost); gjson.GetBytes(r.Body, "max_tokens").Int() != 512 {
			t.Fatalf("provider got %s", r.Body)
		}
	}
	// The seed prompt is 7 words, so 7 prompt tokens a call: refused once
	// what is left is below the next call's estimate, never past 300.
	if spent := calls * 7; spent > 300 || openai.Count() != calls || calls < 20 {
		t.Fatalf("%d calls admitted (%d tokens), provider called %d times", calls, spent, openai.Count())
	}

	// Per consumer: key-auth names the consumer; each has its own budget.
	for _, c := range []string{"jack", "jill"} {
		code, b, err := l.Admin("PUT", "/apisix/admin/consumers", []byte(`{"username":"`+c+`","plugins":{"key-auth":{"key":"`+c+`-key"}}}`))
		if err != nil || code/100 != 2 {
			t.Fatalf("consumer %s: %d %v %s", c, code, err, b)
		}
	}
	limitConf := `{"rules":[{"count":60,"time_window":60,"key":"$consumer_name","header_prefix":"consumer"}],"rejected_code":429}`
	proxyConf := `{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer ` + localKey + `"}},"options":{"model":"m"},"override":{"endpoint":"` + l.local.URL + `/v1/chat/completions"}}`
	route := `{"id":"per-consumer","uri":"/per-consumer","methods":["POST"],"plugins":{"key-auth":{},"ext-plugin-pre-req":{"conf":[` +
		`{"name":"ai-rate-limiting","value":` + jsonString(limitConf) + `},{"name":"ai-proxy","value":` + jsonString(proxyConf) + `}]}},"upstream_id":"ai-proxy-relay"}`
	l.putRouteJSON(t, "per-consumer", route)
	limited := func(who string) int {
		for n := 0; n < 30; n++ {
			resp, body := l.post(t, "/per-consumer", `{"messages":[{"role":"user","content":"one two three four five"}]}`, "apikey", who+"-key")
			if resp.StatusCode == 429 {
				return n
			}
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", who, resp.StatusCode, body)
			}
		}
		return -1
	}
	jack := limited("jack")
	if strings.HasPrefix(l.Version, "3.2.") {
		// 3.2 does not name the consumer to its upstream: the rule's key is
		// empty and, as in APISIX, such a rule does not apply.
		if jack != -1 {
			t.Fatalf("APISIX %s: jack limited after %d calls", l.Version, jack)
		}
		return
	}
	if jack < 1 {
		t.Fatalf("jack was limited after %d calls", jack)
	}
	if jill := limited("jill"); jill != jack {
		t.Fatalf("jill got %d calls, jack %d: budgets are not per consumer", jill, jack)
	}
}

// Two real APISIX nodes, each with the runner APISIX spawned, share one
// budget through a real Redis: 100 concurrent calls spread over both never
// spend more than the limit.
func TestRateLimitingRedisOnTwoRealNodes(t *testing.T) {
	rs := redisserver.Start(t, 0)
	nodes := []*lane{newLane(t), newLane(t)}
	const limit = 300
	limitConf := `{"limit":` + strconv.Itoa(limit) + `,"time_window":3600,"policy":"redis","redis_host":"127.0.0.1","redis_port":` + strconv.Itoa(rs.Port) + `}`
	for _, n := range nodes {
		proxyConf := `{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer ` + localKey + `"}},"options":{"model":"m"},"override":{"endpoint":"` + n.local.URL + `/v1/chat/completions"}}`
		route := `{"id":"shared","uri":"/shared","methods":["POST"],"plugins":{"ext-plugin-pre-req":{"conf":[` +
			`{"name":"ai-rate-limiting","value":` + jsonString(limitConf) + `},{"name":"ai-proxy","value":` + jsonString(proxyConf) + `}]}},"upstream_id":"ai-proxy-relay"}`
		n.putRouteJSON(t, "shared", route)
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	// One call on each node first: both count against the one budget
	// (which node then wins the race for the rest does not matter).
	for _, n := range nodes {
		resp, body := n.post(t, "/shared", `{"messages":[{"role":"user","content":"one two three"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
		}
		statuses[200]++
	}
	var wg sync.WaitGroup
	for i := range 98 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := nodes[i%2].post(t, "/shared", `{"messages":[{"role":"user","content":"one two three"}]}`)
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Each call uses 3 prompt + 3 answer tokens and reserves about 20: never
	// over the limit, and the first wave of reservations alone spends more
	// than a quarter of it (see the double's cluster test).
	admitted := nodes[0].local.Count() + nodes[1].local.Count()
	if statuses[200] != admitted || statuses[200]+statuses[503] != 100 || admitted*6 > limit || admitted*6 < limit/4 ||
		nodes[0].local.Count() == 0 || nodes[1].local.Count() == 0 {
		t.Fatalf("statuses %v, providers called %d + %d times", statuses, nodes[0].local.Count(), nodes[1].local.Count())
	}
	t.Logf("APISIX %s ×2: %d of 100 admitted, %d tokens of %d", nodes[0].Version, admitted, admitted*6, limit)
}

package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/redisserver"
)

// limitedRoute puts a route with an AI proxy plugin ("ai-proxy" or
// "ai-proxy-multi") and ai-rate-limiting, as APISIX's docs write it,
// through the converter.
func (e *env) limitedRoute(t *testing.T, uri, proxy, proxyConf, limitConf string) {
	t.Helper()
	route := `{"id":"` + strings.Trim(uri, "/") + `","uri":"` + uri + `","methods":["POST"],"plugins":{"` + proxy + `":` + proxyConf + `,"ai-rate-limiting":` + limitConf + `}}`
	e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, route))
}

func localProxy(url string) string {
	return `{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer local-key"}},"options":{"model":"m"},"override":{"endpoint":"` + url + `/v1/chat/completions"}}`
}

// usedTokens is what the fake charges for mathBody: three prompt words and
// the three of its answer.
const usedTokens = 6

func headerInt(t *testing.T, a answerH, name string) int {
	t.Helper()
	n, err := strconv.Atoi(a.Get(name))
	if err != nil {
		t.Fatalf("header %s = %q", name, a.h.Get(name))
	}
	return n
}

type answerH struct {
	answer
	h http.Header
}

func (a answerH) Get(name string) string { return a.h.Get(name) }

func (e *env) askH(t *testing.T, uri, body string, hdr ...string) answerH {
	t.Helper()
	resp := e.post(t, uri, body, hdr...)
	b := readAll(t, resp)
	return answerH{answer{status: resp.StatusCode, body: b, instance: resp.Header.Get("X-LLM-Instance"),
		attempts: resp.Header.Get("X-LLM-Attempts"), reason: resp.Header.Get("X-LLM-Fallback-Reason"),
		retryAfter: resp.Header.Get("Retry-After"), errorCode: gjson.Get(b, "error.code").String(),
		callID: resp.Header.Get("X-LLM-Call-Id")}, resp.Header}
}

func TestRateLimiting(t *testing.T) {
	metrics := freeAddr(t)
	e := newEnv(t, withArgs("--metrics-addr", metrics))

	t.Run("a route's token budget, with APISIX's quota headers", func(t *testing.T) {
		f := startFakes(t, 1)[0]
		e.limitedRoute(t, "/budget", "ai-proxy", localProxy(f.URL), `{"limit":100,"time_window":60,"rejected_code":429,"rejected_msg":"token quota exceeded"}`)
		const name = "X-Ai-Ratelimit-Remaining-Ai-Proxy-Openai-Compatible"
		used, last := 0, 101
		for i := 0; ; i++ {
			a := e.askH(t, "/budget", mathBody)
			if a.status == 429 {
				if a.Get("X-Ai-Ratelimit-Remaining-Ai-Proxy-Openai-Compatible") != "0" || a.Get("X-Ai-Ratelimit-Limit-Ai-Proxy-Openai-Compatible") != "100" ||
					gjson.Get(a.body, "error_msg").String() != "token quota exceeded" || a.errorCode != "rate_limited" {
					t.Fatalf("refusal: %+v %v", a.answer, a.h)
				}
				if reset := headerInt(t, a, "X-Ai-Ratelimit-Reset-Ai-Proxy-Openai-Compatible"); reset < 1 || reset > 60 {
					t.Fatalf("reset %d", reset)
				}
				break
			}
			if a.status != 200 || i > 20 {
				t.Fatalf("call %d: %+v", i, a.answer)
			}
			rem := headerInt(t, a, name)
			if rem >= last {
				t.Fatalf("remaining went from %d to %d", last, rem)
			}
			last = rem
			used += usedTokens
		}
		// Refused only when the next call's estimate no longer fits, and
		// never past the limit: usage was charged, estimates given back.
		if used > 100 || used < 100-2*30 || f.Count()*usedTokens != used {
			t.Fatalf("admitted %d tokens in %d calls", used, f.Count())
		}
	})

	t.Run("reject before spending: a call that cannot fit is refused up front", func(t *testing.T) {
		f := startFakes(t, 1)[0]
		e.limitedRoute(t, "/upfront", "ai-proxy", localProxy(f.URL), `{"limit":500,"time_window":60}`)
		a := e.askH(t, "/upfront", `{"max_tokens":1000,"messages":[{"role":"user","content":"write a long story"}]}`)
		if a.status != 503 || f.Count() != 0 {
			t.Fatalf("%+v; provider called %d times", a.answer, f.Count())
		}
		if a := e.askH(t, "/upfront", `{"max_tokens":100,"messages":[{"role":"user","content":"a short one"}]}`); a.status != 200 {
			t.Fatalf("%+v", a.answer)
		}
	})

	t.Run("rules: one budget per consumer header", func(t *testing.T) {
		f := startFakes(t, 1)[0]
		e.limitedRoute(t, "/perkey", "ai-proxy", localProxy(f.URL), `{"rules":[{"count":60,"time_window":60,"key":"$http_x_user","header_prefix":"user"}]}`)
		spent := 0
		for spent < 20 {
			a := e.askH(t, "/perkey", mathBody, "X-User", "alice")
			if a.status != 200 {
				break
			}
			if a.Get("X-Ai-User-Ratelimit-Limit") != "60" {
				t.Fatalf("headers %v", a.h)
			}
			spent++
		}
		if a := e.askH(t, "/perkey", mathBody, "X-User", "alice"); a.status != 503 {
			t.Fatalf("alice after her budget: %+v", a.answer)
		}
		if a := e.askH(t, "/perkey", mathBody, "X-User", "bob"); a.status != 200 || a.Get("X-Ai-User-Ratelimit-Remaining") == "" {
			t.Fatalf("bob: %+v %v", a.answer, a.h)
		}
	})

	t.Run("streams are charged their final usage", func(t *testing.T) {
		f := startFakes(t, 1)[0]
		e.limitedRoute(t, "/stream", "ai-proxy", localProxy(f.URL), `{"limit":1000,"time_window":60,"limit_strategy":"completion_tokens"}`)
		const remaining = "X-Ai-Ratelimit-Remaining-Ai-Proxy-Openai-Compatible"
		a := e.askH(t, "/stream", `{"max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		if a.status != 200 || !strings.Contains(a.body, "[DONE]") || headerInt(t, a, remaining) != 1000-50 {
			t.Fatalf("%+v %v", a.answer, a.h)
		}
		// The stream used 3 completion tokens: the next call sees 997 less
		// its own 50.
		deadline := time.Now().Add(2 * time.Second)
		for {
			b := e.askH(t, "/stream", `{"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`)
			if got := headerInt(t, b, remaining); got == 1000-3-50 {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("remaining %d after a 3-token stream", got)
			}
		}
	})

	t.Run("per instance with ai-proxy-multi: a spent instance is skipped", func(t *testing.T) {
		f := startFakes(t, 2)
		multi := `{"fallback_strategy":["rate_limiting","http_5xx"],"instances":[` + inst{name: "small", url: f[0].URL, weight: 1, priority: 1}.conf() + `,` + inst{name: "big", url: f[1].URL, weight: 1}.conf() + `]}`
		e.limitedRoute(t, "/inst", "ai-proxy-multi", multi, `{"instances":[{"name":"small","limit":40,"time_window":60},{"name":"big","limit":100000,"time_window":60}]}`)
		var seen []string
		for range 6 {
			a := e.askH(t, "/inst", mathBody)
			if a.status != 200 {
				t.Fatalf("%+v", a.answer)
			}
			seen = append(seen, a.instance)
		}
		if seen[0] != "small" || seen[5] != "big" || f[0].Count()*usedTokens > 40 {
			t.Fatalf("instances %v; small called %d times", seen, f[0].Count())
		}
		// Without rate_limiting in the strategy the spent instance refuses.
		e.limitedRoute(t, "/inst", "ai-proxy-multi", strings.Replace(multi, `"rate_limiting",`, "", 1), `{"instances":[{"name":"small","limit":40,"time_window":60}]}`)
		if a := e.askH(t, "/inst", mathBody); a.status != 200 || a.instance != "small" {
			t.Fatalf("%+v", a.answer)
		}
		for range 10 {
			if a := e.askH(t, "/inst", mathBody); a.status == 503 {
				return
			}
		}
		t.Fatal("the spent instance was never refused")
	})

	t.Run("cost: priced calls, an X-LLM-Cost header and a spend limit", func(t *testing.T) {
		f := startFakes(t, 1)[0]
		// 10 per million prompt tokens, 30 per million completion tokens:
		// mathBody costs 3·10 + 3·30 = 120 millionths.
		e.limitedRoute(t, "/cost", "ai-proxy", localProxy(f.URL), `{"limit":0.001,"time_window":3600,"limit_strategy":"cost","prices":{"m":{"input":10,"output":30}}}`)
		calls := 0
		for ; calls < 20; calls++ {
			a := e.askH(t, "/cost", mathBody)
			if a.status != 200 {
				break
			}
			if a.Get("X-Llm-Cost") != "0.000120" {
				t.Fatalf("cost header %q", a.Get("X-Llm-Cost"))
			}
			if calls == 0 {
				if entry := e.callEntry(t, a.callID); entry.Get("cost").String() != "0.000120" {
					t.Fatalf("call log: %s", entry.Raw)
				}
			}
		}
		if calls*120 > 1000 || calls < 3 {
			t.Fatalf("%d calls admitted under a 0.001 budget", calls)
		}
		// The spend counter has every priced call (within float rounding).
		got := runnerGauge(t, metrics, `ai_proxy_cost_total{model="m",provider="openai-compatible"}`)
		if want := float64(calls) * 0.00012; got < want-1e-9 || got > want+1e-9 {
			t.Fatalf("ai_proxy_cost_total = %v, want %v", got, want)
		}
	})

	// Every refusal above is counted.
	if n := runnerGauge(t, metrics, "ai_proxy_ratelimit_rejections_total"); n < 5 {
		t.Fatalf("ai_proxy_ratelimit_rejections_total = %v", n)
	}
}

// Two nodes (two APISIX test doubles, two runners) share one budget in Redis exactly:
// 200 concurrent calls spread over both never spend more than the limit,
// because each reserves its estimate atomically and estimates here are
// never below real usage. Then Redis dies: fail_mode decides, and limits
// work again when it returns.
func TestRateLimitingRedisCluster(t *testing.T) {
	rs := redisserver.Start(t, 0)
	metrics := freeAddr(t)
	nodes := []*env{newEnv(t, withArgs("--metrics-addr", metrics)), newEnv(t)}
	f := fakes.StartProvider(fakes.ProviderOptions{})
	defer f.Close()
	const limit = 600
	conf := func(mode string) string {
		return `{"limit":` + strconv.Itoa(limit) + `,"time_window":3600,"policy":"redis","redis_host":"127.0.0.1","redis_port":` + strconv.Itoa(rs.Port) + `,"redis_timeout":300,"fail_mode":"` + mode + `"}`
	}
	for _, n := range nodes {
		n.limitedRoute(t, "/shared", "ai-proxy", localProxy(f.URL), conf("deny"))
	}
	var mu sync.Mutex
	ok, refused, other := 0, 0, 0
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i%2]
			a := n.askH(t, "/shared", mathBody)
			mu.Lock()
			defer mu.Unlock()
			switch a.status {
			case 200:
				ok++
			case 503:
				refused++
			default:
				other++
			}
		}()
	}
	wg.Wait()
	spent := ok * usedTokens
	// Over-spend bound: none, since every estimate (about 20 tokens)
	// exceeds the real 6. Under-use bound: the first wave of reservations
	// alone admits limit/20 calls of 6 tokens, more than limit/4; calls
	// refused while estimates were in flight may leave the rest unused.
	if other != 0 || spent > limit || spent < limit/4 || f.Count() != ok {
		t.Fatalf("%d admitted (%d tokens of %d), %d refused, %d other; provider saw %d", ok, spent, limit, refused, other, f.Count())
	}
	t.Logf("200 concurrent calls on two nodes: %d admitted, %d tokens of %d, %d refused", ok, spent, limit, refused)

	// Redis down: deny refuses with 503 rate_limiter_unavailable; allow lets
	// calls through.
	rs.Stop()
	nodes[1].limitedRoute(t, "/open", "ai-proxy", localProxy(f.URL), conf("allow"))
	if a := nodes[0].askH(t, "/shared", mathBody); a.status != 503 || a.errorCode != "rate_limiter_unavailable" {
		t.Fatalf("deny with Redis down: %+v", a.answer)
	}
	if n := runnerGauge(t, metrics, "ai_proxy_ratelimit_store_errors_total"); n < 1 {
		t.Fatalf("Redis down was not counted: ai_proxy_ratelimit_store_errors_total = %v", n)
	}
	if a := nodes[1].askH(t, "/open", mathBody); a.status != 200 {
		t.Fatalf("allow with Redis down: %+v", a.answer)
	}
	// Redis back (empty: this one keeps nothing): limits count again.
	redisserver.Start(t, rs.Port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := nodes[0].askH(t, "/shared", mathBody)
		if a.status == 200 && a.Get("X-Ai-Ratelimit-Remaining-Ai-Proxy-Openai-Compatible") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis returned: %+v", a.answer)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

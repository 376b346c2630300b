package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

// inst is one ai-proxy-multi instance pointed at a local fake.
type inst struct {
	name     string
	url      string // the fake's base URL
	weight   int
	priority int
	extra    string // more instance fields, each starting with a comma
}

func (i inst) conf() string {
	return fmt.Sprintf(`{"name":%q,"provider":"openai-compatible","weight":%d,"priority":%d,"auth":{"header":{"Authorization":"Bearer local-key"}},"options":{"model":"m-%s"},"override":{"endpoint":"%s/v1/chat/completions"}%s}`,
		i.name, i.weight, i.priority, i.name, i.url, i.extra)
}

// multiRoute puts an ai-proxy-multi route, converted as users convert
// theirs, with extra top-level conf fields.
func (e *env) multiRoute(t *testing.T, uri, extra string, insts ...inst) {
	t.Helper()
	var list []string
	for _, i := range insts {
		list = append(list, i.conf())
	}
	conf := `{"instances":[` + strings.Join(list, ",") + `]` + extra + `}`
	e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, `{"id":"`+strings.Trim(uri, "/")+`","uri":"`+uri+`","methods":["POST"],"plugins":{"ai-proxy-multi":`+conf+`}}`))
}

func startFakes(t *testing.T, n int) []*fakes.Provider {
	t.Helper()
	out := make([]*fakes.Provider, n)
	for i := range out {
		out[i] = fakes.StartProvider(fakes.ProviderOptions{})
		t.Cleanup(out[i].Close)
	}
	return out
}

const mathBody = `{"messages":[{"role":"user","content":"What is 1+1?"}]}`

// answer is what a client got from one call.
type answer struct {
	status                      int
	instance, attempts, reason  string
	body, retryAfter, errorCode string
	callID                      string
}

func (e *env) ask(t *testing.T, uri, body string) answer {
	t.Helper()
	return e.askH(t, uri, body).answer
}

func TestMultiBalancing(t *testing.T) {
	e := newEnv(t)

	t.Run("weights spread 1000 calls", func(t *testing.T) {
		f := startFakes(t, 3)
		e.multiRoute(t, "/spread", "", inst{name: "a", url: f[0].URL, weight: 5}, inst{name: "b", url: f[1].URL, weight: 3}, inst{name: "c", url: f[2].URL, weight: 2})
		const calls = 1000
		var wg sync.WaitGroup
		var failed atomic.Int64
		next := make(chan struct{}, calls)
		for range calls {
			next <- struct{}{}
		}
		close(next)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					resp, err := http.Post(e.data.URL+"/spread", "application/json", strings.NewReader(mathBody))
					if err != nil || resp.StatusCode != 200 {
						failed.Add(1)
					}
					if resp != nil {
						resp.Body.Close()
					}
				}
			}()
		}
		wg.Wait()
		// Smooth weighted round robin is exact over any multiple of the
		// weights' sum; concurrency only reorders: the tolerance is ±1%.
		for i, want := range []int{500, 300, 200} {
			if got := f[i].Count(); got < want-10 || got > want+10 || failed.Load() != 0 {
				t.Fatalf("instance %d got %d calls, want %d±10 (failed %d)", i, got, want, failed.Load())
			}
		}
	})

	t.Run("priority tiers", func(t *testing.T) {
		f := startFakes(t, 2)
		e.multiRoute(t, "/tiers", `,"fallback_strategy":["http_5xx"]`, inst{name: "primary", url: f[0].URL, weight: 1, priority: 10}, inst{name: "backup", url: f[1].URL, weight: 100})
		for range 5 {
			if a := e.ask(t, "/tiers", mathBody); a.status != 200 || a.instance != "primary" || a.attempts != "1" {
				t.Fatalf("%+v", a)
			}
		}
		f[0].Script(fakes.Reply{Status: 500, Body: `{"error":{"message":"boom","type":"server_error"}}`})
		a := e.ask(t, "/tiers", mathBody)
		if a.status != 200 || a.instance != "backup" || a.attempts != "2" || a.reason != "http_500" {
			t.Fatalf("%+v", a)
		}
		if got := gjson.GetBytes(f[1].Requests()[0].Body, "model").String(); got != "m-backup" {
			t.Fatalf("backup got model %q, want its own option", got)
		}
		// The call log has one entry with both attempts; the request model
		// stays what the client asked (none here: the first option's).
		last := e.callEntry(t, a.callID)
		if last.Get("instance").String() != "backup" || last.Get("attempts.#").Int() != 2 ||
			last.Get("attempts.0.instance").String() != "primary" || last.Get("attempts.0.status").Int() != 500 ||
			last.Get("attempts.0.reason").String() != "http_500" || last.Get("attempts.1.status").Int() != 200 {
			t.Fatalf("call log: %s", last.Raw)
		}
		if h := e.lastAccess(t).UpstreamHeader; h.Get("X-LLM-Instance") != "backup" || h.Get("X-LLM-Attempts") != "2" || h.Get("X-LLM-Fallback-Reason") != "http_500" {
			t.Fatalf("access log sees %v", h)
		}
	})

	t.Run("chash on a header keeps a user on one instance", func(t *testing.T) {
		f := startFakes(t, 3)
		e.multiRoute(t, "/sticky", `,"balancer":{"algorithm":"chash","hash_on":"header","key":"x-user"}`,
			inst{name: "a", url: f[0].URL, weight: 1}, inst{name: "b", url: f[1].URL, weight: 1}, inst{name: "c", url: f[2].URL, weight: 1})
		seen := map[string]bool{}
		for u := range 30 {
			user := "user-" + strconv.Itoa(u)
			first := ""
			for range 3 {
				resp := e.post(t, "/sticky", mathBody, "X-User", user)
				readAll(t, resp)
				got := resp.Header.Get("X-LLM-Instance")
				if first == "" {
					first = got
				}
				if got != first || resp.StatusCode != 200 {
					t.Fatalf("%s went to %s then %s (%d)", user, first, got, resp.StatusCode)
				}
			}
			seen[first] = true
		}
		if len(seen) != 3 {
			t.Fatalf("30 users used %d instances", len(seen))
		}
		for _, fk := range f {
			if r, ok := fk.Last(); ok && r.Header.Get("X-AI-Proxy-Hash") != "" {
				t.Fatal("the hash header reached the provider")
			}
		}
	})

	t.Run("model groups", func(t *testing.T) {
		f := startFakes(t, 2)
		e.multiRoute(t, "/groups", "",
			inst{name: "fast", url: f[0].URL, weight: 1, extra: `,"models":["fast","cheap"]`},
			inst{name: "smart", url: f[1].URL, weight: 1, extra: `,"models":["smart"]`})
		for range 3 {
			a := e.ask(t, "/groups", `{"model":"smart","messages":[{"role":"user","content":"hi"}]}`)
			if a.status != 200 || a.instance != "smart" {
				t.Fatalf("%+v", a)
			}
		}
		if got := gjson.GetBytes(f[1].Requests()[0].Body, "model").String(); got != "m-smart" || f[0].Count() != 0 {
			t.Fatalf("smart group: upstream model %q, fast got %d calls", got, f[0].Count())
		}
		cheap := e.ask(t, "/groups", `{"model":"cheap","messages":[{"role":"user","content":"hi"}]}`)
		if cheap.instance != "fast" {
			t.Fatalf("%+v", cheap)
		}
		if entry := e.callEntry(t, cheap.callID); entry.Get("request_model").String() != "cheap" || entry.Get("model").String() != "m-fast" {
			t.Fatalf("call log: %s", entry.Raw)
		}
		a := e.ask(t, "/groups", `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`)
		if a.status != 400 || a.errorCode != "model_not_served" || !strings.Contains(a.body, "cheap, fast, smart") {
			t.Fatalf("%+v", a)
		}
	})
}

func TestMultiFallback(t *testing.T) {
	metrics := freeAddr(t)
	e := newEnv(t, withArgs("--metrics-addr", metrics))
	const both = `,"fallback_strategy":["http_429","http_5xx"]`

	t.Run("429 cools the instance for its Retry-After, then one trial", func(t *testing.T) {
		f := startFakes(t, 2)
		e.multiRoute(t, "/cool", both, inst{name: "a", url: f[0].URL, weight: 1}, inst{name: "b", url: f[1].URL, weight: 1})
		f[0].Script(fakes.Reply{Status: 429, Header: http.Header{"Retry-After": {"2"}}, Body: `{"error":{"message":"slow down","type":"rate_limit_exceeded"}}`})
		start := time.Now()
		a := e.ask(t, "/cool", mathBody)
		if a.status != 200 || a.instance != "b" || a.reason != "http_429" {
			t.Fatalf("%+v", a)
		}
		if got := runnerGauge(t, metrics, `ai_proxy_instance_state{instance="a",route="cool",state="cooling"}`); got != 1 {
			t.Fatalf("state gauge cooling = %v", got)
		}
		for time.Since(start) < 1700*time.Millisecond {
			if a := e.ask(t, "/cool", mathBody); a.instance != "b" || a.status != 200 {
				t.Fatalf("while a cools: %+v", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if f[0].Count() != 1 {
			t.Fatalf("a was called %d times while cooling", f[0].Count())
		}
		time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
		// The round robin's next pick is a again; it is the trial.
		deadline := time.Now().Add(time.Second)
		for f[0].Count() == 1 && time.Now().Before(deadline) {
			e.ask(t, "/cool", mathBody)
		}
		if f[0].Count() != 2 {
			t.Fatalf("no trial call to a after its cooldown")
		}
		if got := runnerGauge(t, metrics, `ai_proxy_instance_state{instance="a",route="cool",state="healthy"}`); got != 1 {
			t.Fatalf("after a good trial the state gauge healthy = %v", got)
		}
		if got := runnerGauge(t, metrics, `ai_proxy_instance_attempts_total{instance="a",provider="openai-compatible",result="http_429"}`); got != 1 {
			t.Fatalf("attempts counter = %v", got)
		}
	})

	t.Run("all instances cooling: 503 with Retry-After, nobody called", func(t *testing.T) {
		f := startFakes(t, 2)
		e.multiRoute(t, "/allcool", both, inst{name: "a", url: f[0].URL, weight: 1}, inst{name: "b", url: f[1].URL, weight: 1})
		for _, fk := range f {
			fk.Script(fakes.Reply{Status: 429, Header: http.Header{"Retry-After": {"30"}}, Body: `{"error":{"message":"quota","type":"rate_limit_exceeded"}}`})
		}
		// Both refuse: the client gets the last provider's own 429.
		if a := e.ask(t, "/allcool", mathBody); a.status != 429 || a.attempts != "2" || !strings.Contains(a.body, "quota") {
			t.Fatalf("%+v", a)
		}
		a := e.ask(t, "/allcool", mathBody)
		ra, _ := strconv.Atoi(a.retryAfter)
		if a.status != 503 || a.errorCode != "instances_cooling" || ra < 28 || ra > 30 {
			t.Fatalf("%+v", a)
		}
		if f[0].Count()+f[1].Count() != 2 {
			t.Fatal("a cooling instance was called")
		}
	})

	t.Run("a dead key's 401 moves on when listed", func(t *testing.T) {
		dead := fakes.StartProvider(fakes.ProviderOptions{Keys: map[string]string{"Authorization": "Bearer other-key"}})
		defer dead.Close()
		live := startFakes(t, 1)[0]
		e.multiRoute(t, "/deadkey", `,"fallback_http_statuses":[401,402]`,
			inst{name: "old-key", url: dead.URL, weight: 1, priority: 1}, inst{name: "new-key", url: live.URL, weight: 1})
		if a := e.ask(t, "/deadkey", mathBody); a.status != 200 || a.instance != "new-key" || a.reason != "http_401" {
			t.Fatalf("%+v", a)
		}
		// The dead key cools: the next call goes straight to the live one.
		if a := e.ask(t, "/deadkey", mathBody); a.attempts != "1" || dead.Count() != 1 {
			t.Fatalf("%+v, dead key called %d times", a, dead.Count())
		}
	})

	t.Run("refused connection and timeout move on", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		refused := "http://" + l.Addr().String()
		l.Close()
		slow := startFakes(t, 2)
		e.multiRoute(t, "/refused", both, inst{name: "gone", url: refused, weight: 1, priority: 1}, inst{name: "ok", url: slow[1].URL, weight: 1})
		if a := e.ask(t, "/refused", mathBody); a.status != 200 || a.instance != "ok" || a.reason != "connect_error" {
			t.Fatalf("%+v", a)
		}
		e.multiRoute(t, "/slow", both+`,"timeout":300`, inst{name: "stalls", url: slow[0].URL, weight: 1, priority: 1}, inst{name: "ok", url: slow[1].URL, weight: 1})
		slow[0].Script(fakes.Reply{StallBeforeHeaders: make(chan struct{})})
		if a := e.ask(t, "/slow", mathBody); a.status != 200 || a.instance != "ok" || a.reason != "timeout" {
			t.Fatalf("%+v", a)
		}
		if r, ok := slow[0].WaitFinished(0, 2*time.Second); !ok || !r.Canceled {
			t.Fatal("the stalled attempt was not cancelled")
		}
	})

	t.Run("max_retries and retry_on_failure_within_ms", func(t *testing.T) {
		f := startFakes(t, 3)
		fail := &fakes.Reply{Status: 503, Body: `{"error":{"message":"overloaded","type":"server_error"}}`}
		for _, fk := range f {
			fk.Always(fail)
		}
		e.multiRoute(t, "/retries", both+`,"max_retries":1`, inst{name: "a", url: f[0].URL, weight: 1, priority: 3}, inst{name: "b", url: f[1].URL, weight: 1, priority: 2}, inst{name: "c", url: f[2].URL, weight: 1, priority: 1})
		if a := e.ask(t, "/retries", mathBody); a.status != 503 || a.attempts != "2" || f[2].Count() != 0 {
			t.Fatalf("%+v; c called %d times", a, f[2].Count())
		}
		g := startFakes(t, 2)
		g[0].Always(&fakes.Reply{Status: 500, Delay: 400 * time.Millisecond, Body: `{"error":{"message":"slow failure","type":"server_error"}}`})
		e.multiRoute(t, "/within", both+`,"retry_on_failure_within_ms":100`, inst{name: "slow", url: g[0].URL, weight: 1, priority: 1}, inst{name: "ok", url: g[1].URL, weight: 1})
		a := e.ask(t, "/within", mathBody)
		if a.status != 500 || g[1].Count() != 0 || !strings.Contains(a.body, "slow failure") {
			t.Fatalf("%+v", a)
		}
		if r := e.callEntry(t, a.callID).Get("attempts.0.reason").String(); !strings.Contains(r, "retry_on_failure_within_ms") {
			t.Fatalf("call log reason %q", r)
		}
	})

	t.Run("streams fall back only before the first byte", func(t *testing.T) {
		f := startFakes(t, 2)
		e.multiRoute(t, "/stream", both, inst{name: "a", url: f[0].URL, weight: 1, priority: 1}, inst{name: "b", url: f[1].URL, weight: 1})
		f[0].Script(fakes.Reply{Status: 503, Body: `{"error":{"message":"busy","type":"server_error"}}`})
		a := e.ask(t, "/stream", streamBody)
		if a.status != 200 || a.instance != "b" || !strings.Contains(a.body, "data: [DONE]") {
			t.Fatalf("%+v", a)
		}
		// a is cooling now (1 s); wait, then let it start a stream and break.
		time.Sleep(1100 * time.Millisecond)
		f[0].Script(fakes.Reply{Events: []string{chunk, chunk}, StallAfter: 1})
		e.multiRoute(t, "/stream", both+`,"stream_idle_timeout_ms":300`, inst{name: "a", url: f[0].URL, weight: 1, priority: 1}, inst{name: "b", url: f[1].URL, weight: 1})
		before := f[1].Count()
		resp, err := http.Post(e.data.URL+"/stream", "application/json", strings.NewReader(streamBody))
		if err != nil {
			t.Fatal(err)
		}
		body, rerr := readBody(resp)
		if resp.Header.Get("X-LLM-Instance") != "a" || !strings.Contains(body, "tok") || rerr == nil || f[1].Count() != before {
			t.Fatalf("instance %q body %q err %v; b called %d more times", resp.Header.Get("X-LLM-Instance"), body, rerr, f[1].Count()-before)
		}
	})
}

// While an instance flips between failing and healthy under 50 concurrent
// clients, no request is lost, and a cooling instance gets no calls
// beyond those already in flight when it failed and one trial per cooldown.
func TestMultiFlappingInstance(t *testing.T) {
	e := newEnv(t)
	f := startFakes(t, 2)
	e.multiRoute(t, "/flap", `,"fallback_strategy":["http_429","http_5xx"]`, inst{name: "flaky", url: f[0].URL, weight: 1}, inst{name: "steady", url: f[1].URL, weight: 1})
	var failed atomic.Int64
	var total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post(e.data.URL+"/flap", "application/json", strings.NewReader(mathBody))
				total.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				if _, err := readBody(resp); err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	failing := &fakes.Reply{Status: 500, Body: `{"error":{"message":"flap","type":"server_error"}}`}
	var duringFailure int
	for range 2 {
		time.Sleep(300 * time.Millisecond)
		n := f[0].Count()
		f[0].Always(failing)
		time.Sleep(1500 * time.Millisecond)
		duringFailure = f[0].Count() - n
		f[0].Always(nil)
		// In flight when it failed: at most the 50 clients; then one
		// trial after 1 s (the second cooldown is 2 s, past the window).
		if duringFailure > 50+1 {
			t.Fatalf("flaky got %d calls in 1.5 s of failing", duringFailure)
		}
	}
	// The last cooldown (at most 4 s after three failures) ends, a trial
	// heals the instance, and it takes calls again.
	n := f[0].Count()
	deadline := time.Now().Add(10 * time.Second)
	for f[0].Count() < n+10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), total.Load())
	}
	if f[0].Count() < n+10 {
		t.Fatal("the flaky instance never came back")
	}
	t.Logf("%d requests, flaky: %d calls while failing (last window), %d total", total.Load(), duringFailure, f[0].Count())
}

// readBody reads a whole answer; a broken stream is an error.
func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// callEntry waits for the call log's line of one call.
func (e *env) callEntry(t *testing.T, id string) gjson.Result {
	t.Helper()
	var entry gjson.Result
	if id == "" || !e.waitCallLog(t, func(l gjson.Result) bool {
		if l.Get("call_id").String() == id {
			entry = l
			return true
		}
		return false
	}) {
		t.Fatalf("no call-log line for call %q", id)
	}
	return entry
}

// A bad ai-proxy-multi conf answers every request of its route with a JSON
// error naming the field, never the secret; APISIX accepted the route
// because the conf is an opaque string to it.
func TestMultiBadConf(t *testing.T) {
	e := newEnv(t)
	f := startFakes(t, 1)
	for _, tc := range []struct{ conf, field string }{
		{`{"instances":[` + inst{name: "a", url: f[0].URL, weight: 1}.conf() + `,` + inst{name: "a", url: f[0].URL, weight: 1}.conf() + `]}`, "instances[1].name"},
		{`{"instances":[` + inst{name: "a", url: f[0].URL}.conf() + `]}`, "instances"},
		{`{"instances":[{"name":"x","provider":"acme","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret-value"}}}]}`, "instances[0].provider"},
		{`{"instances":[` + inst{name: "a", url: f[0].URL, weight: 1}.conf() + `],"fallback_strategy":"http_4xx"}`, "fallback_strategy"},
	} {
		value, _ := json.Marshal(tc.conf)
		route := `{"id":"bad","uri":"/bad","plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy-multi","value":` + string(value) + `}]}},"upstream_id":"ai-proxy-relay"}`
		e.admin(t, "PUT", "/apisix/admin/routes", route)
		a := e.ask(t, "/bad", mathBody)
		if a.status != 500 || a.errorCode != "invalid_conf" || gjson.Get(a.body, "error.param").String() != tc.field || strings.Contains(a.body, "sk-secret") {
			t.Fatalf("%s: %+v", tc.field, a)
		}
	}
	if f[0].Count() != 0 {
		t.Fatal("a bad conf let a request through")
	}
}

// Providers report their remaining budget on every answer: an instance
// that says it has none left is skipped until its reset, before any 429.
func TestMultiSkipsExhaustedInstance(t *testing.T) {
	e := newEnv(t)
	f := startFakes(t, 2)
	e.multiRoute(t, "/budget", "", inst{name: "a", url: f[0].URL, weight: 1, priority: 1}, inst{name: "b", url: f[1].URL, weight: 1})
	f[0].Script(fakes.Reply{Header: http.Header{
		"Content-Type":                   {"application/json"},
		"X-Ratelimit-Limit-Requests":     {"100"},
		"X-Ratelimit-Remaining-Requests": {"0"},
		"X-Ratelimit-Reset-Requests":     {"1s"},
	}, Body: `{"id":"c","object":"chat.completion","model":"m-a","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`})
	if a := e.ask(t, "/budget", mathBody); a.status != 200 || a.instance != "a" {
		t.Fatalf("%+v", a)
	}
	start := time.Now()
	for time.Since(start) < 800*time.Millisecond {
		if a := e.ask(t, "/budget", mathBody); a.instance != "b" || a.attempts != "1" {
			t.Fatalf("while a has no budget: %+v", a)
		}
	}
	time.Sleep(time.Until(start.Add(1100 * time.Millisecond)))
	if a := e.ask(t, "/budget", mathBody); a.instance != "a" {
		t.Fatalf("after the reset: %+v", a)
	}
	if f[0].Count() != 2 {
		t.Fatalf("a called %d times", f[0].Count())
	}
}

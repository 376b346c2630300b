package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

// localRoute points a route at a plain-HTTP fake on loopback with extra
// conf fields (limits), through the converter.
func (e *env) localRoute(t *testing.T, uri, endpoint, extra string) {
	t.Helper()
	conf := `{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer local-key"}},"options":{"model":"m"},"override":{"endpoint":"` + endpoint + `"}` + extra + `}`
	e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, `{"id":"`+strings.Trim(uri, "/")+`","uri":"`+uri+`","methods":["POST"],"plugins":{"ai-proxy":`+conf+`}}`))
}

const streamBody = `{"messages":[{"role":"user","content":"hi"}],"stream":true}`

var chunk = `{"model":"m","choices":[{"index":0,"delta":{"content":"tok"}}]}`

// Every fault: what the client gets, and nothing left running upstream or
// in the runner.
func TestFaults(t *testing.T) {
	metrics := freeAddr(t)
	e := newEnv(t, withArgs("--metrics-addr", metrics))
	goroutinesBefore := runnerGauge(t, metrics, "go_goroutines")
	local := fakes.StartProvider(fakes.ProviderOptions{})
	defer local.Close()
	endpoint := local.URL + "/v1/chat/completions"

	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String() + "/v1/chat/completions"
	dead.Close()

	t.Run("provider refuses the connection", func(t *testing.T) {
		e.localRoute(t, "/refused", deadURL, "")
		resp := e.post(t, "/refused", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_unavailable" ||
			!strings.Contains(body, "connection refused") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("provider stalls before the first byte", func(t *testing.T) {
		e.localRoute(t, "/stall", endpoint, `,"timeout":300`)
		local.Script(fakes.Reply{StallBeforeHeaders: make(chan struct{})})
		n := local.Count()
		resp := e.post(t, "/stall", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 504 || gjson.Get(body, "error.code").String() != "upstream_timeout" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if r, ok := local.WaitFinished(n, 5*time.Second); !ok || !r.Canceled {
			t.Fatal("the stalled upstream call was not cancelled")
		}
	})

	t.Run("stream stalls before its first event", func(t *testing.T) {
		local.Script(fakes.Reply{Header: http.Header{"Content-Type": {"text/event-stream"}}, Raw: []string{": keep-alive\n\n", "data: " + chunk + "\n\n"}, StallAfter: 1})
		resp := e.post(t, "/stall", streamBody)
		if body := readAll(t, resp); resp.StatusCode != 504 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("provider resets mid-stream", func(t *testing.T) {
		e.localRoute(t, "/reset", endpoint, "")
		local.Script(fakes.Reply{Hijack: func(c net.Conn, rw io.ReadWriter) {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			ev := "data: " + chunk + "\n\n"
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not FIN
			}
		}})
		resp := e.post(t, "/reset", streamBody)
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "tok") || err == nil {
			t.Fatalf("client must see the event, then a broken stream: %d %q %v", resp.StatusCode, body, err)
		}
	})

	t.Run("stream stalls mid-way past max_stream_duration_ms", func(t *testing.T) {
		e.localRoute(t, "/long", endpoint, `,"max_stream_duration_ms":500`)
		n := local.Count()
		local.Script(fakes.Reply{Events: []string{chunk, chunk, "[DONE]"}, StallAfter: 1})
		resp := e.post(t, "/long", streamBody)
		body, err := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "tok") || strings.Contains(string(body), "[DONE]") || err == nil {
			t.Fatalf("%q %v", body, err)
		}
		if r, ok := local.WaitFinished(n, 5*time.Second); !ok || !r.Canceled {
			t.Fatal("the stalled stream was not cancelled upstream")
		}
	})

	t.Run("provider answers invalid JSON", func(t *testing.T) {
		e.localRoute(t, "/garbage", endpoint, "")
		local.Script(fakes.Reply{Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"choices":[`})
		resp := e.post(t, "/garbage", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_invalid_response" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("provider truncates its stream", func(t *testing.T) {
		local.Script(fakes.Reply{Events: []string{chunk, chunk}}) // no [DONE]
		resp := e.post(t, "/garbage", streamBody)
		body := readAll(t, resp)
		if resp.StatusCode != 200 || strings.Count(body, "tok") != 2 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if !e.waitCallLog(t, func(l gjson.Result) bool {
			return l.Get("route_id").Str == "garbage" && l.Get("stream").Bool() && l.Get("stream_done").Exists() && !l.Get("stream_done").Bool()
		}) {
			t.Fatal("the call log does not record the stream ended without [DONE]")
		}
	})

	t.Run("provider answers a body over max_response_bytes", func(t *testing.T) {
		e.localRoute(t, "/big", endpoint, `,"max_response_bytes":4096`)
		local.Script(fakes.Reply{Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"x":"` + strings.Repeat("a", 10000) + `"}`})
		resp := e.post(t, "/big", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_response_too_large" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("client sends too much", func(t *testing.T) {
		e.localRoute(t, "/small", endpoint, `,"max_req_body_size":64`)
		resp := e.post(t, "/small", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 413 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})

	t.Run("client sends no JSON", func(t *testing.T) {
		for _, c := range []struct{ ctype, body string }{{"application/json", "model=gpt-4"}, {"text/plain", `{"messages":[]}`}} {
			req, _ := http.NewRequest("POST", e.data.URL+"/small", strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 4 || !gjson.ValidBytes(body) || gjson.GetBytes(body, "error.message").Str == "" {
				t.Errorf("%s %q: %d %s", c.ctype, c.body, resp.StatusCode, body)
			}
		}
	})

	t.Run("client hangs up mid-stream", func(t *testing.T) {
		e.localRoute(t, "/hangup", endpoint, "")
		n := local.Count()
		local.Script(fakes.Reply{Events: []string{chunk, chunk}, StallAfter: 1})
		req, _ := http.NewRequest("POST", e.data.URL+"/hangup", strings.NewReader(streamBody))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		left := time.Now()
		resp.Body.Close()
		r, ok := local.WaitFinished(n, 5*time.Second)
		if !ok || !r.Canceled {
			t.Fatal("the upstream stream kept running after the client left")
		}
		t.Logf("upstream cancelled %v after the client hung up (through APISIX double and relay)", time.Since(left))
	})

	// Nothing stuck in the runner: no stream in flight, and no more
	// goroutines than the connection pools account for (two per pooled
	// upstream connection, one per pooled APISIX connection).
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, s := runnerGauge(t, metrics, "go_goroutines"), runnerGauge(t, metrics, "ai_proxy_streams_in_flight")
		if s == 0 && g <= goroutinesBefore+20 {
			t.Logf("runner goroutines: %v before the faults, %v after", goroutinesBefore, g)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runner still has %v goroutines (%v before) and %v streams in flight", g, goroutinesBefore, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runnerGauge reads one unlabelled series from the runner's /metrics.
func runnerGauge(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no %s in the runner's metrics", name)
	return 0
}

// Restarting the runner while APISIX keeps running: after a crash APISIX
// flushes its tokens and prepares the conf again; after a reload it keeps
// sending the old token, the new runner answers CONF_TOKEN_NOT_FOUND and
// APISIX prepares again. Either way the next request succeeds.
func TestRunnerRestart(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	ok := func(when string) {
		t.Helper()
		resp := e.post(t, "/anything", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", when, resp.StatusCode, body)
		}
	}
	ok("before")
	before := e.gw.Stats()

	if err := e.gw.StopRunner(); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.StartRunner(); err != nil {
		t.Fatal(err)
	}
	ok("after a restart")
	if s := e.gw.Stats(); s.PrepareConf != before.PrepareConf+1 {
		t.Errorf("PrepareConf %d -> %d", before.PrepareConf, s.PrepareConf)
	}

	before = e.gw.Stats()
	if err := e.gw.ReloadRunner(); err != nil {
		t.Fatal(err)
	}
	ok("after a reload")
	if s := e.gw.Stats(); s.TokenRetries == before.TokenRetries || s.PrepareConf != before.PrepareConf+1 {
		t.Errorf("reload: retries %d -> %d, PrepareConf %d -> %d", before.TokenRetries, s.TokenRetries, before.PrepareConf, s.PrepareConf)
	}
}

// SIGTERM with a stream in flight: the stream finishes within the grace
// period, new requests are refused meanwhile, and the runner exits.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	local := fakes.StartProvider(fakes.ProviderOptions{})
	defer local.Close()
	e.localRoute(t, "/drain", local.URL+"/v1/chat/completions", "")
	gate := make(chan struct{})
	local.Script(fakes.Reply{Events: []string{chunk, chunk, "[DONE]"}, Gate: gate})
	resp := e.post(t, "/drain", streamBody)
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	exited := e.gw.RunnerExited()
	if err := e.gw.SignalRunner(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New calls are refused: the socket is gone (APISIX: 503) or the relay
	// no longer accepts (502).
	deadline := time.Now().Add(5 * time.Second)
	for {
		r2 := e.post(t, "/drain", seedMathBody)
		readAll(t, r2)
		if r2.StatusCode == 503 || r2.StatusCode == 502 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new requests still accepted after SIGTERM: %d", r2.StatusCode)
		}
	}
	select {
	case <-exited:
		t.Fatal("the runner exited with a stream in flight")
	default:
	}
	close(gate)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("in-flight stream: %q %v", rest, err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not exit after its last stream")
	}
}

// waitCallLog waits for a call-log line that satisfies match.
func (e *env) waitCallLog(t *testing.T, match func(gjson.Result) bool) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range e.callLog(t) {
			if match(l) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// After `apisix reload` APISIX keeps the tokens the old runner issued, and a
// worker that was not told to refresh keeps sending them. The new runner
// must not give those numbers to other routes' confs: route A's request
// must never run with route B's conf (its provider and key).
func TestReloadNeverMixesRoutes(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	e.putRoute(t, "deepseek", func(r string) string {
		return strings.Replace(strings.Replace(r, `"/anything"`, `"/deepseek"`, 1), `"ai-proxy-route"`, `"ai-proxy-deepseek"`, 1)
	})
	call := func(path string) {
		t.Helper()
		resp := e.post(t, path, seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	// Both workers learn both tokens (requests alternate between workers).
	call("/anything")
	call("/anything")
	call("/deepseek")
	call("/deepseek")
	if err := e.gw.ReloadRunner(); err != nil {
		t.Fatal(err)
	}
	// deepseek's stale token misses on one worker, which re-prepares it;
	// the other worker still holds openai's old token.
	call("/deepseek")
	openai, deepseek := e.fakes[openAIHost].Count(), e.fakes[deepSeekHost].Count()
	call("/anything")
	if e.fakes[openAIHost].Count() != openai+1 || e.fakes[deepSeekHost].Count() != deepseek {
		t.Fatalf("after the reload the OpenAI route's request went to DeepSeek")
	}
}

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/apisix"
)

// One call-log line per call, with the fields the provider's usage implies,
// and the same figures in APISIX's access log.
func TestCallLog(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")

	resp := e.post(t, "/anything", seedMathBody, "X-Request-Id", "req-42", "Authorization", "Bearer client-key")
	body := readAll(t, resp)
	resp = e.post(t, "/anything", `{"messages":[{"role":"user","content":"What is 1+1?"}],"stream":true}`)
	stream := readAll(t, resp)
	if strings.Contains(stream, `"usage":{`) {
		t.Errorf("client that did not ask got a usage event")
	}

	var lines []gjson.Result
	e.waitCallLog(t, func(gjson.Result) bool { lines = e.callLog(t); return len(lines) >= 2 })
	if len(lines) != 2 {
		t.Fatalf("%d call-log lines", len(lines))
	}
	whole, streamed := lines[0], lines[1]
	want := map[string]string{
		"request_id": "req-42", "route_id": "ai-proxy-route", "client_ip": "127.0.0.1", "provider": "openai",
		"upstream_host": "api.openai.com", "request_model": "gpt-4", "model": "gpt-4-0613", "status": "200", "stream": "false",
		"prompt_tokens":     gjson.Get(body, "usage.prompt_tokens").Raw,
		"completion_tokens": gjson.Get(body, "usage.completion_tokens").Raw,
		"total_tokens":      gjson.Get(body, "usage.total_tokens").Raw,
	}
	for k, v := range want {
		if got := whole.Get(k).String(); got != v {
			t.Errorf("call log %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"time", "ttft_ms", "duration_ms", "bytes_in", "bytes_out", "cached_tokens", "reasoning_tokens"} {
		if !whole.Get(k).Exists() {
			t.Errorf("call log lacks %s", k)
		}
	}
	// The stream's usage came from the event the relay asked for.
	if streamed.Get("total_tokens").Int() == 0 || !streamed.Get("stream").Bool() || !streamed.Get("stream_done").Bool() {
		t.Errorf("stream line %s", streamed.Raw)
	}
	if e.lastAccess(t).UpstreamHeader.Get("X-LLM-Time-To-First-Token") == "" {
		t.Error("stream without TTFT header")
	}
}

// With logging.payloads the bodies are logged; credentials still are not
// (checked for every test by the env's cleanup, which greps all logs).
func TestCallLogPayloads(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai", func(r string) string {
		return strings.Replace(r, `\"options\"`, `\"logging\":{\"payloads\":true},\"options\"`, 1)
	})
	resp := e.post(t, "/anything", seedMathBody, "Authorization", "Bearer "+openAIKey)
	readAll(t, resp)
	var line gjson.Result
	e.waitCallLog(t, func(l gjson.Result) bool { line = l; return true })
	if !strings.Contains(line.Get("request_body").Str, "What is 1+1?") || !strings.Contains(line.Get("response_body").Str, "1+1 equals 2.") {
		t.Fatalf("payloads missing: %s", line.Raw)
	}
}

// logging.summaries: false turns the line off.
func TestCallLogSummariesOff(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai", func(r string) string {
		return strings.Replace(r, `\"options\"`, `\"logging\":{\"summaries\":false},\"options\"`, 1)
	})
	readAll(t, e.post(t, "/anything", seedMathBody))
	e.putRoute(t, "deepseek", func(r string) string { return strings.Replace(r, `"/anything"`, `"/other"`, 1) })
	readAll(t, e.post(t, "/other", seedMathBody))
	if !e.waitCallLog(t, func(l gjson.Result) bool { return l.Get("provider").Str == "deepseek" }) {
		t.Fatal("no line for the route with summaries on")
	}
	for _, l := range e.callLog(t) {
		if l.Get("provider").Str == "openai" {
			t.Fatalf("line written with summaries off: %s", l.Raw)
		}
	}
}

// The call log survives logrotate: moved away, then SIGHUP, then a new file.
func TestCallLogReopenOnSIGHUP(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	readAll(t, e.post(t, "/anything", seedMathBody))
	e.waitCallLog(t, func(gjson.Result) bool { return true })
	if err := os.Rename(e.accessLog, e.accessLog+".1"); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.SignalRunner(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen happens when the runner handles the signal: call until a
	// line lands in the new file.
	for i := 0; ; i++ {
		readAll(t, e.post(t, "/anything", seedMathBody))
		if e.waitCallLog(t, func(gjson.Result) bool { return true }) {
			break
		}
		if i == 5 {
			t.Fatal("no line in the reopened call log")
		}
	}
	if old, _ := os.ReadFile(e.accessLog + ".1"); strings.Count(string(old), "llm call") < 1 {
		t.Fatal("the rotated file lost its line")
	}
}

// GET /metrics counts requests and tokens by provider and model.
func TestMetrics(t *testing.T) {
	addr := freeAddr(t)
	e := newEnv(t, withArgs("--metrics-addr", addr, "--memory-limit", "123456789"))
	e.putRoute(t, "openai")
	body := readAll(t, e.post(t, "/anything", seedMathBody))
	readAll(t, e.post(t, "/anything", seedMathBody))
	total := gjson.Get(body, "usage.total_tokens").Int() * 2

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := string(b)
	for _, want := range []string{
		`ai_proxy_requests_total{model="gpt-4-0613",provider="openai",status="200"} 2`,
		`ai_proxy_tokens_total{kind="total",model="gpt-4-0613",provider="openai"} ` + strconv.FormatInt(total, 10),
		`ai_proxy_time_to_first_token_seconds_count{provider="openai",stream="false"} 2`,
		`ai_proxy_streams_in_flight 0`,
		`ai_proxy_gcp_token_fetches_total 0`,
		// --memory-limit is the runtime's limit.
		`go_gc_gomemlimit_bytes 1.23456789e+08`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The relay port serves no metrics: it only relays ticketed calls.
	r2, err := http.Get("http://" + e.relayAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 403 {
		t.Errorf("relay /metrics: %d", r2.StatusCode)
	}
}

// The access_log_format of conf/config.yaml, rendered by the double as
// nginx would: only variables nginx has (the double refuses others, as
// nginx does at start), and the LLM fields of a call filled in.
func TestAccessLogFormatOfConfig(t *testing.T) {
	if _, err := apisix.ParseAccessLogFormat(`{"route":"$route_id"}`); err == nil || !strings.Contains(err.Error(), `unknown "route_id" variable`) {
		t.Errorf("a format with $route_id: %v", err)
	}
	f, err := apisix.LoadAccessLogFormat("../../conf/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.putRoute(t, "openai")
	resp := e.post(t, "/anything", seedMathBody)
	body := readAll(t, resp)
	line := f.Line(e.lastAccess(t))
	var got map[string]string
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("access-log line is not JSON: %v: %s", err, line)
	}
	want := map[string]string{
		"status": "200", "llm_provider": "openai", "llm_model": "gpt-4-0613", "llm_request_model": "gpt-4",
		"llm_call_id":      resp.Header.Get("X-LLM-Call-Id"),
		"llm_total_tokens": gjson.Get(body, "usage.total_tokens").String(),
	}
	for k, v := range want {
		if got[k] != v || v == "" {
			t.Errorf("%s = %q, want %q (%s)", k, got[k], v, line)
		}
	}
}

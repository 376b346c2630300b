package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

// A client cannot beat the route's options with a second copy of a key
// (plain or escaped): providers' decoders keep the last one. Nor hide a
// stream's usage with a second include_usage.
func TestDuplicateBodyKeysRefused(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	for _, body := range []string{
		`{"model":"x","model":"o1-pro","messages":[{"role":"user","content":"hi"}]}`,
		`{"max_tokens":1,"messages":[{"role":"user","content":"hi"}],"max\u005ftokens":100000}`,
		`{"model":"x","m\u006fdel":"o1-pro","messages":[]}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`,
	} {
		resp := e.post(t, "/anything", body)
		got := readAll(t, resp)
		if resp.StatusCode != 400 || gjson.Get(got, "error.code").String() != "invalid_body" || !strings.Contains(got, "more than once") {
			t.Errorf("%s: %d %s", body, resp.StatusCode, got)
		}
	}
	if n := e.fakes[openAIHost].Count(); n != 0 {
		t.Errorf("the provider got %d requests", n)
	}
	// Unique keys still pass untouched.
	if resp := e.post(t, "/anything", `{"model":"x","messages":[{"role":"user","content":"hi"}],"user":"u1"}`); resp.StatusCode != 200 {
		t.Errorf("%d %s", resp.StatusCode, readAll(t, resp))
	}
}

// Conf errors name the field, never its value: an endpoint may hold a key.
func TestConfErrorsDoNotEchoSecrets(t *testing.T) {
	e := newEnv(t)
	const secret = "k-secret-in-the-query-42"
	for i, endpoint := range []string{
		"api.example.com/v1/chat/completions?key=" + secret,
		"https://api.example.com/%zz/chat/completions?key=" + secret,
	} {
		uri := fmt.Sprintf("/leak%d", i)
		e.admin(t, "PUT", "/apisix/admin/routes", routeWithConf(t, uri, `{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer x"}},"override":{"endpoint":"`+endpoint+`"}}`))
		// The route converter checks the conf too, with the same care.
		if out, err := runRoute(`{"uri":"/x","plugins":{"ai-proxy":{"provider":"openai-compatible","auth":{"header":{"Authorization":"Bearer x"}},"override":{"endpoint":"` + endpoint + `"}}}}`); err == nil || strings.Contains(out, secret) {
			t.Errorf("ai-proxy-runner route: %v %s", err, out)
		}
		resp := e.post(t, uri, seedMathBody)
		body := readAll(t, resp)
		if resp.StatusCode != 500 || gjson.Get(body, "error.param").String() != "override.endpoint" {
			t.Errorf("%s: %d %s", endpoint, resp.StatusCode, body)
		}
		if strings.Contains(body, secret) {
			t.Errorf("the client got the endpoint's key: %s", body)
		}
	}
	if strings.Contains(e.output.String(), secret) {
		t.Error("the runner logged the endpoint's key")
	}
}

// Misspelt or repeated fields at any level of the conf are errors naming
// their path, as APISIX's own schemas (additionalProperties: false).
func TestConfUnknownNestedFieldsRefused(t *testing.T) {
	e := newEnv(t)
	base := `"provider":"openai","auth":{"header":{"Authorization":"Bearer x"}}`
	for i, c := range []struct{ conf, param string }{
		{`{` + base + `,"override":{"endpont":"https://evil.example/v1/chat/completions"}}`, "override.endpont"},
		{`{"provider":"vertex-ai","auth":{"gcp":{"service_acount_json":"{}"}},"provider_conf":{"project_id":"p","region":"us-central1"}}`, "auth.gcp.service_acount_json"},
		{`{"provider":"openai","auth":{"headers":{"Authorization":"Bearer x"}}}`, "auth.headers"},
		{`{` + base + `,"logging":{"payload":true}}`, "logging.payload"},
		{`{"provider":"vertex-ai","auth":{"gcp":{}},"provider_conf":{"projectid":"p","region":"us-central1"}}`, "provider_conf.projectid"},
		{`{` + base + `,"provider":"deepseek"}`, "provider"},
		{`{"provider":"openai","auth":{"header":{"Authorization":"Bearer x","Authorization":"Bearer y"}}}`, "auth.header.Authorization"},
		{`{` + base + `,"options":{"model":"a","model":"b"}}`, "options.model"},
	} {
		uri := fmt.Sprintf("/typo%d", i)
		e.admin(t, "PUT", "/apisix/admin/routes", routeWithConf(t, uri, c.conf))
		resp := e.post(t, uri, seedMathBody)
		body := readAll(t, resp)
		if resp.StatusCode != 500 || gjson.Get(body, "error.code").String() != "invalid_conf" || gjson.Get(body, "error.param").String() != c.param {
			t.Errorf("%s: %d %s", c.conf, resp.StatusCode, body)
		}
	}
}

// routeWithConf is a stock-APISIX route whose ext-plugin conf value is the
// given ai-proxy JSON text, kept byte for byte (duplicates included).
func routeWithConf(t *testing.T, uri, conf string) string {
	t.Helper()
	value := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(conf)
	return `{"id":"` + strings.Trim(uri, "/") + `","uri":"` + uri + `","methods":["GET","POST"],"plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy","value":"` + value + `"}]}},"upstream_id":"ai-proxy-relay"}`
}

// Values that end up in a host or a header are checked when the conf is
// read, not found wanting on every request.
func TestConfHostAndHeaderValuesChecked(t *testing.T) {
	e := newEnv(t)
	for i, c := range []struct{ conf, param string }{
		{`{"provider":"vertex-ai","auth":{"gcp":{}},"provider_conf":{"project_id":"p","region":"127.0.0.1:29443/steal#"}}`, "provider_conf.region"},
		{`{"provider":"vertex-ai","auth":{"gcp":{}},"provider_conf":{"project_id":"p/../x","region":"us-central1"}}`, "provider_conf.project_id"},
		{`{"provider":"openai","auth":{"header":{"Host":"evil.example"}}}`, "auth.header.Host"},
		{`{"provider":"openai","auth":{"header":{"Content-Length":"0"}}}`, "auth.header.Content-Length"},
		{`{"provider":"openai","auth":{"header":{"Bad Name":"x"}}}`, "auth.header.Bad Name"},
		{`{"provider":"openai","auth":{"header":{"Authorization":"Bearer \u0000x"}}}`, "auth.header.Authorization"},
	} {
		uri := fmt.Sprintf("/value%d", i)
		e.admin(t, "PUT", "/apisix/admin/routes", routeWithConf(t, uri, c.conf))
		resp := e.post(t, uri, seedMathBody)
		body := readAll(t, resp)
		if resp.StatusCode != 500 || gjson.Get(body, "error.param").String() != c.param {
			t.Errorf("%s: %d %s", c.conf, resp.StatusCode, body)
		}
	}
}

// One embeddings request cannot fan out into thousands of :predict calls.
func TestVertexEmbeddingsInputsBounded(t *testing.T) {
	e := newEnv(t)
	e.vertexRoute(t, "vertex-ai-embeddings", nil)
	inputs := make([]string, 251)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("%q", fmt.Sprint("text ", i))
	}
	resp := e.post(t, "/embeddings", `{"input":[`+strings.Join(inputs, ",")+`]}`)
	body := readAll(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(body, "at most 250 inputs") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if n := e.fakes[vertexHost].Count(); n != 0 {
		t.Errorf("vertex got %d calls", n)
	}
}

// Headers that pick who is billed under the route's key never pass; a
// route that needs one sets it in auth.header.
func TestBillingHeadersDropped(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	resp := e.post(t, "/anything", seedMathBody, "OpenAI-Organization", "org-client", "OpenAI-Project", "proj-client", "X-Goog-User-Project", "gp")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, readAll(t, resp))
	}
	got := e.lastRequest(t, openAIHost)
	for _, h := range []string{"OpenAI-Organization", "OpenAI-Project", "X-Goog-User-Project"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("provider got %s: %s", h, v)
		}
	}
}

// Only POST is relayed: anything else gets 405 and reaches no provider.
func TestRelayOnlyPost(t *testing.T) {
	e := newEnv(t)
	e.admin(t, "PUT", "/apisix/admin/routes", routeWithConf(t, "/anymethod", `{"provider":"openai","auth":{"header":{"Authorization":"Bearer `+openAIKey+`"}}}`))
	req, _ := http.NewRequest("GET", e.data.URL+"/anymethod", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || gjson.GetBytes(body, "error.code").String() != "method_not_allowed" {
		t.Errorf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if n := e.fakes[openAIHost].Count(); n != 0 {
		t.Errorf("provider got %d requests", n)
	}
}

// Metric labels never carry the client's model: 300 requests with distinct
// models on a route whose provider fails make one series.
func TestMetricLabelsNotChosenByClients(t *testing.T) {
	addr := freeAddr(t)
	e := newEnv(t, withArgs("--metrics-addr", addr))
	e.putRoute(t, "openai")
	for i := range 300 {
		e.fakes[openAIHost].Script(fakes.Reply{Status: 429, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`})
		resp := e.post(t, "/anything", fmt.Sprintf(`{"model":"client-model-%d","messages":[{"role":"user","content":"hi"}]}`, i))
		readAll(t, resp)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(b), "client-model") {
		t.Error("a client's model became a metric label")
	}
	if !strings.Contains(string(b), `ai_proxy_requests_total{model="gpt-4",provider="openai",status="429"} 300`) {
		t.Errorf("no series for the route's model: %s", grepLines(string(b), "ai_proxy_requests_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Request bodies in flight share one budget: past it the runner answers 503
// runner_busy with Retry-After instead of growing without bound, and
// serves again once calls end.
func TestBodyBytesInFlightBounded(t *testing.T) {
	e := newEnv(t, withArgs("--max-body-bytes-in-flight", fmt.Sprint(20<<20)))
	local := fakes.StartProvider(fakes.ProviderOptions{})
	defer local.Close()
	e.localRoute(t, "/big", local.URL+"/v1/chat/completions", "")
	hold := make(chan struct{})
	for range 2 {
		local.Script(fakes.Reply{StallBeforeHeaders: hold, Header: http.Header{"Content-Type": {"application/json"}},
			Body: `{"id":"c","object":"chat.completion","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`})
	}
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 8<<20) + `"}]}`
	type result struct {
		status int
		retry  string
		body   string
	}
	results := make(chan result, 3)
	for range 2 {
		go func() {
			resp, err := http.Post(e.data.URL+"/big", "application/json", strings.NewReader(big))
			if err != nil {
				results <- result{status: -1, body: err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
		}()
	}
	// Both held at the provider: 16 MiB of the 20 MiB budget in use.
	for local.Count() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	resp := e.post(t, "/big", big)
	body := readAll(t, resp)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || gjson.Get(body, "error.code").String() != "runner_busy" {
		t.Errorf("third body over the budget: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	close(hold)
	for range 2 {
		if r := <-results; r.status != 200 {
			t.Errorf("held call: %d %s", r.status, r.body)
		}
	}
	if resp := e.post(t, "/big", big); resp.StatusCode != 200 {
		t.Errorf("after the held calls ended: %d %s", resp.StatusCode, readAll(t, resp))
	}
}

// A stream that falls silent mid-way is ended after stream_idle_timeout_ms
// (keep-alive comments count as life) and cancelled upstream, instead of
// being held until APISIX's read timeout.
func TestStreamIdleTimeout(t *testing.T) {
	e := newEnv(t)
	local := fakes.StartProvider(fakes.ProviderOptions{})
	defer local.Close()
	e.localRoute(t, "/idle", local.URL+"/v1/chat/completions", `,"stream_idle_timeout_ms":400`)
	n := local.Count()
	local.Script(fakes.Reply{Events: []string{chunk, chunk, "[DONE]"}, StallAfter: 1})
	start := time.Now()
	resp := e.post(t, "/idle", streamBody)
	body, err := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "tok") || strings.Contains(string(body), "[DONE]") || err == nil {
		t.Fatalf("%q %v", body, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the stalled stream was held %v", d)
	}
	if r, ok := local.WaitFinished(n, 5*time.Second); !ok || !r.Canceled {
		t.Fatal("the stalled stream was not cancelled upstream")
	}
	if !e.waitCallLog(t, func(l gjson.Result) bool {
		return l.Get("error_kind").String() == "stream_limit"
	}) {
		t.Error("no stream_limit line in the call log")
	}
}

// Bare CR line endings (allowed by the SSE spec): each event still reaches
// the client on its own, the usage is read, and the usage event the relay
// asked for stays with the relay.
func TestStreamBareCRLineEndings(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	gate := make(chan struct{})
	e.fakes[openAIHost].Script(fakes.Reply{
		Header: http.Header{"Content-Type": {"text/event-stream"}},
		Raw: []string{
			"data: " + `{"id":"c","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"role":"assistant","content":"2"}}]}` + "\r\r",
			"data: " + `{"id":"c","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\r\r" +
				"data: " + `{"id":"c","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}` + "\r\r" +
				"data: [DONE]\r\r",
		},
		Gate: gate,
	})
	resp := e.post(t, "/anything", streamBody)
	br := newLineReader(resp.Body)
	select {
	case first := <-br:
		if !strings.Contains(first, `"content":"2"`) {
			t.Fatalf("first line %q", first)
		}
	case <-time.After(5 * time.Second):
		close(gate)
		t.Fatal("the first event did not arrive while the provider held the rest")
	}
	close(gate)
	var rest strings.Builder
	for l := range br {
		rest.WriteString(l)
	}
	if !strings.Contains(rest.String(), "[DONE]") || strings.Contains(rest.String(), `"usage":{`) {
		t.Errorf("rest %q", rest.String())
	}
	if !e.waitCallLog(t, func(l gjson.Result) bool { return l.Get("total_tokens").Int() == 5 && l.Get("stream").Bool() }) {
		t.Error("the stream's usage was not read")
	}
}

// newLineReader delivers an answer's lines as they arrive.
func newLineReader(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		var line []byte
		for {
			n, err := r.Read(buf)
			for _, b := range buf[:n] {
				line = append(line, b)
				if b == '\n' || b == '\r' {
					if s := strings.TrimSpace(string(line)); s != "" {
						ch <- string(line)
					}
					line = line[:0]
				}
			}
			if err != nil {
				if len(line) > 0 {
					ch <- string(line)
				}
				return
			}
		}
	}()
	return ch
}

// A ticket is good for one call: replaying one that APISIX sent (as a local
// process that saw it would) is refused, and nothing reaches a provider.
func TestTicketReplayRefused(t *testing.T) {
	e := newEnv(t)
	var seen string
	e.fakes[openAIHost].Script(fakes.Reply{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"id":"x","object":"chat.completion","model":"gpt-4-0613","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`})
	e.putRoute(t, "openai")
	// Capture the ticket on its way to the relay: a relay in front of the
	// relay, as the upstream.
	capture := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get("X-AI-Proxy-Ticket")
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest("POST", "http://"+e.relayAddr+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer capture.Close()
	e.admin(t, "PUT", "/apisix/admin/upstreams/ai-proxy-relay", fmt.Sprintf(`{"nodes":{%q:1},"type":"roundrobin"}`, strings.TrimPrefix(capture.URL, "http://")))
	if resp := e.post(t, "/anything", seedMathBody); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, readAll(t, resp))
	}
	if seen == "" {
		t.Fatal("no ticket seen")
	}
	req, _ := http.NewRequest("POST", "http://"+e.relayAddr+"/anything", strings.NewReader(seedMathBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-AI-Proxy-Ticket", seen)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "already used") {
		t.Errorf("replayed ticket: %d %s", resp.StatusCode, body)
	}
	if n := e.fakes[openAIHost].Count(); n != 1 {
		t.Errorf("the provider got %d calls, want 1", n)
	}
}

// Idle connections to the relay are closed (--relay-idle-timeout), so no
// one can hold hundreds open; the metrics listener serves no profiles.
func TestRelayIdleConnectionsClosedAndNoPprof(t *testing.T) {
	metrics := freeAddr(t)
	e := newEnv(t, withArgs("--relay-idle-timeout", "500ms", "--metrics-addr", metrics))
	c, err := net.Dial("tcp", e.relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n{}")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("%v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v after %v, want EOF", err, time.Since(start))
	}
	r, err := http.Get("http://" + metrics + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 404 {
		t.Errorf("pprof on the metrics listener: %d", r.StatusCode)
	}
}

// An answer in an encoding the relay did not ask for is named as such.
func TestUnrequestedContentEncoding(t *testing.T) {
	e := newEnv(t)
	e.putRoute(t, "openai")
	e.fakes[openAIHost].Script(fakes.Reply{Header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, Body: "\x1f\x8b\x08\x00garbage"})
	resp := e.post(t, "/anything", seedMathBody)
	body := readAll(t, resp)
	if resp.StatusCode != 502 || !strings.Contains(body, `Content-Encoding \"gzip\"`) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}

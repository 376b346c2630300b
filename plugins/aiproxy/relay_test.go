package aiproxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// relayFixture is the relay in front of a scripted upstream, with a ticket
// for a conf pointing at that upstream: the unit-level twin of the e2e suite.
type relayFixture struct {
	plugin   *Plugin
	relay    *httptest.Server
	upstream *httptest.Server
	ticket   string // one ticket, for forgeries of it
	conf     confID
	got      chan *http.Request // what the upstream received, body read into gotBody
	gotBody  chan string
}

func newRelayFixture(t *testing.T, conf string, upstream http.HandlerFunc) *relayFixture {
	t.Helper()
	f := &relayFixture{plugin: New(Options{}), got: make(chan *http.Request, 8), gotBody: make(chan string, 8)}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.got <- r
		f.gotBody <- string(b)
		upstream(w, r)
	}))
	conf = strings.ReplaceAll(conf, "UPSTREAM", f.upstream.URL)
	c := ParseConf([]byte(conf))
	if c.Err != nil {
		t.Fatal(c.Err)
	}
	f.plugin.confs.put(c)
	f.conf = c.ID
	f.ticket = f.plugin.tickets.mint(c.ID)
	f.relay = httptest.NewServer(f.plugin)
	t.Cleanup(func() {
		f.relay.Close()
		f.upstream.Close()
		f.plugin.Close()
	})
	return f
}

func (f *relayFixture) post(t *testing.T, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", f.relay.URL+"/anything", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TicketHeader, f.fresh())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// fresh mints a ticket for the fixture's conf: each is good once.
func (f *relayFixture) fresh() string { return f.plugin.tickets.mint(f.conf) }

func readBodyString(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const openAIConf = `{"provider":"openai","auth":{"header":{"Authorization":"Bearer sk-route"}},"options":{"model":"gpt-4"},"override":{"endpoint":"UPSTREAM/v1/chat/completions"},"timeout":2000}`

func TestRelayNonStream(t *testing.T) {
	f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-1")
		w.Header().Set("Set-Cookie", "cf=1")
		io.WriteString(w, `{"model":"gpt-4-0613","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`)
	})
	resp := f.post(t, `{"model":"openai","messages":[{"role":"user","content":"hi"}]}`, map[string]string{
		"Authorization": "Bearer client-key", "Cookie": "session=1", "X-Forwarded-For": "10.0.0.1", "OpenAI-Project": "p1",
	})
	body := readBodyString(t, resp)
	up := <-f.got
	if got := up.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer sk-route" {
		t.Errorf("upstream Authorization = %q", got)
	}
	// OpenAI-Project picks who pays under the route's key: not the client's call.
	for _, h := range []string{TicketHeader, "Cookie", "X-Forwarded-For", "OpenAI-Project"} {
		if up.Header.Get(h) != "" {
			t.Errorf("upstream got %s", h)
		}
	}
	if up.URL.Path != "/v1/chat/completions" {
		t.Errorf("upstream header/path: %v %s", up.Header, up.URL.Path)
	}
	if b := <-f.gotBody; gjson.Get(b, "model").String() != "gpt-4" {
		t.Errorf("upstream body %s", b)
	}
	want := map[string]string{
		HeaderProvider: "openai", HeaderRequestModel: "openai", HeaderModel: "gpt-4-0613",
		HeaderPromptTokens: "5", HeaderCompletionTokens: "3", HeaderTotalTokens: "8", "X-Request-Id": "req-1", "Set-Cookie": "",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.Header.Get(HeaderTTFT) == "" || !strings.Contains(body, "gpt-4-0613") {
		t.Errorf("ttft %q body %s", resp.Header.Get(HeaderTTFT), body)
	}
}

func TestRelayStreamsEventByEvent(t *testing.T) {
	release := make(chan struct{})
	f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": keep-alive\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: {\"model\":\"gpt-4-0613\",\"choices\":[{\"delta\":{\"content\":\"1+1\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n")
	})
	resp := f.post(t, `{"messages":[{"role":"user","content":"hi"}],"stream":true}`, nil)
	if resp.Header.Get("X-Accel-Buffering") != "no" || resp.Header.Get(HeaderModel) != "gpt-4-0613" || resp.Header.Get(HeaderTTFT) == "" {
		t.Fatalf("headers %v", resp.Header)
	}
	if b := <-f.gotBody; !gjson.Get(b, "stream_options.include_usage").Bool() {
		t.Fatalf("relay did not ask for usage: %s", b)
	}
	br := bufio.NewReader(resp.Body)
	// The keep-alive and the first event arrive while the upstream is
	// still blocked: nothing waits for the end of the stream.
	var first strings.Builder
	for !strings.Contains(first.String(), "1+1") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading first event: %v (got %q)", err, first.String())
		}
		first.WriteString(line)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if strings.Contains(string(rest), "usage") {
		t.Errorf("client that did not ask got the usage event: %s", rest)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest = %q", rest)
	}
}

func TestRelayRefusals(t *testing.T) {
	f := newRelayFixture(t, `{"provider":"openai","auth":{},"override":{"endpoint":"UPSTREAM/v1/chat/completions"},"max_req_body_size":100}`, func(w http.ResponseWriter, r *http.Request) {
		t.Error("upstream must not be called")
	})
	cases := []struct {
		name   string
		ticket string
		ctype  string
		body   string
		status int
		code   string
	}{
		{"no ticket", "-", "application/json", `{"messages":[]}`, 403, "invalid_ticket"},
		{"forged ticket", "AAAA" + f.ticket[4:], "application/json", `{"messages":[]}`, 403, "invalid_ticket"},
		{"form body", "", "application/x-www-form-urlencoded", `model=x`, 415, "invalid_request"},
		{"not json", "", "application/json", `hello`, 400, "invalid_body"},
		{"empty", "", "application/json", ``, 400, "invalid_request"},
		{"too large", "", "application/json", `{"messages":["` + strings.Repeat("x", 200) + `"]}`, 413, "invalid_request"},
		{"neither chat nor embeddings", "", "application/json", `{"prompt":"x"}`, 400, "unsupported_api"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.relay.URL, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ctype)
			switch c.ticket {
			case "":
				req.Header.Set(TicketHeader, f.fresh())
			case "-":
			default:
				req.Header.Set(TicketHeader, c.ticket)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBodyString(t, resp)
			resp.Body.Close()
			if resp.StatusCode != c.status || gjson.Get(body, "error.code").String() != c.code {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestRelayUpstreamFailures(t *testing.T) {
	t.Run("provider error passed through", func(t *testing.T) {
		f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`)
		})
		resp := f.post(t, `{"messages":[]}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(body, "rate_limit_exceeded") {
			t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("provider down", func(t *testing.T) {
		f := newRelayFixture(t, openAIConf, nil)
		f.upstream.Close()
		resp := f.post(t, `{"messages":[]}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_unavailable" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("provider too slow", func(t *testing.T) {
		f := newRelayFixture(t, strings.Replace(openAIConf, `"timeout":2000`, `"timeout":50`, 1), func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		resp := f.post(t, `{"messages":[]}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 504 || gjson.Get(body, "error.code").String() != "upstream_timeout" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestRelayInvalidAnswers(t *testing.T) {
	t.Run("not json", func(t *testing.T) {
		f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>gateway</html>")
		})
		resp := f.post(t, `{"messages":[]}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_invalid_response" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("too large", func(t *testing.T) {
		f := newRelayFixture(t, strings.Replace(openAIConf, `"timeout":2000`, `"max_response_bytes":1000`, 1), func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"x":"`+strings.Repeat("a", 5000)+`"}`)
		})
		resp := f.post(t, `{"messages":[]}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_response_too_large" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("stream ends before its first event", func(t *testing.T) {
		f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, ": keep-alive\n\n")
		})
		resp := f.post(t, `{"messages":[],"stream":true}`, nil)
		if body := readBodyString(t, resp); resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_invalid_response" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// A client that hangs up mid-stream cancels the upstream request.
func TestRelayClientGoneCancelsUpstream(t *testing.T) {
	canceled := make(chan struct{})
	f := newRelayFixture(t, openAIConf, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	})
	resp := f.post(t, `{"messages":[],"stream":true}`, nil)
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp.Body.Close() // hang up
	select {
	case <-canceled:
		t.Logf("upstream cancelled %v after the client left", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request still running after the client left")
	}
}

// max_response_bytes bounds streams too: past it the client's response is
// cut, not ended as if complete.
func TestRelayStreamOverMaxResponseBytes(t *testing.T) {
	f := newRelayFixture(t, strings.Replace(openAIConf, `"timeout":2000`, `"max_response_bytes":300`, 1), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 20 {
			io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"abcdefghij\"}}]}\n\n")
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	resp := f.post(t, `{"messages":[],"stream":true}`, nil)
	body, err := io.ReadAll(resp.Body)
	if err == nil || strings.Contains(string(body), "[DONE]") || len(body) > 400 {
		t.Fatalf("stream not cut: %d bytes, err %v", len(body), err)
	}
}

package aiproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The relay's own cost, measured beside a direct call to the same mock
// upstream in the same run: compare BenchmarkRelay*/direct with
// BenchmarkRelay*/relay (ns/op, B/op, allocs/op).

func chatAnswer(size int) []byte {
	content := strings.Repeat("x", max(size-200, 1))
	return fmt.Appendf(nil, `{"id":"c","object":"chat.completion","model":"gpt-4-0613","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`, content)
}

func benchUpstream(answer []byte, events int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if events == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.Write(answer)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for range events {
			io.WriteString(w, `data: {"model":"gpt-4-0613","choices":[{"index":0,"delta":{"content":"tok"}}]}`+"\n\n")
			fl.Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
}

// benchPair runs the same request directly against the upstream and
// through the relay.
func benchPair(b *testing.B, answer []byte, events int, reqBody string) {
	benchConf(b, answer, events, reqBody, false, false)
}

// benchConf is benchPair with an ai-proxy conf or, when multi, an
// ai-proxy-multi conf of three instances on the same upstream; limited
// adds an ai-rate-limiting budget (local policy).
func benchConf(b *testing.B, answer []byte, events int, reqBody string, multi, limited bool) {
	path := "/v1/chat/completions"
	if strings.Contains(reqBody, `"input"`) {
		path = "/v1/embeddings"
	}
	up := benchUpstream(answer, events)
	defer up.Close()
	p := New(Options{})
	defer p.Close()
	one := `"provider":"openai","auth":{"header":{"Authorization":"Bearer k"}},"options":{"model":"gpt-4"},"override":{"endpoint":"` + up.URL + path + `"}`
	c := ParseConf([]byte(`{` + one + `}`))
	if multi {
		c = ParseMultiConf([]byte(`{"fallback_strategy":["http_429","http_5xx"],"instances":[{"name":"a","weight":5,`+one+`},{"name":"b","weight":3,`+one+`},{"name":"c","weight":2,`+one+`}]}`), p.health)
	}
	if c.Err != nil {
		b.Fatal(c.Err)
	}
	p.confs.put(c)
	var lc *LimitConf
	if limited {
		lc = p.ParseLimitConf([]byte(`{"limit":1000000000000,"time_window":60}`))
		if lc.Err != nil {
			b.Fatal(lc.Err)
		}
		p.limits.put(lc)
	}
	relay := httptest.NewServer(p)
	defer relay.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	run := func(b *testing.B, url string, ticket bool) {
		body := []byte(reqBody)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if ticket {
				req.Header.Set(TicketHeader, p.tickets.mint(c.ID))
				if lc != nil {
					req.Header.Set(LimitHeader, p.tickets.mint(lc.ID))
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			if events > 0 {
				br := bufio.NewReader(resp.Body)
				for {
					if _, err := br.ReadSlice('\n'); err != nil {
						break
					}
				}
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, up.URL+path, false) })
	b.Run("relay", func(b *testing.B) { run(b, relay.URL+"/anything", true) })
}

var smallChat = `{"messages":[{"role":"user","content":"What is 1+1?"}]}`

func BenchmarkRelayChat1KB(b *testing.B) { benchPair(b, chatAnswer(1<<10), 0, smallChat) }

// BenchmarkRelayChat1KBMulti is BenchmarkRelayChat1KB through an
// ai-proxy-multi route of three weighted instances: the cost of choosing.
func BenchmarkRelayChat1KBMulti(b *testing.B) {
	benchConf(b, chatAnswer(1<<10), 0, smallChat, true, false)
}

// BenchmarkRelayChat1KBLimited is BenchmarkRelayChat1KB with an
// ai-rate-limiting budget: the local check's cost in a whole call.
func BenchmarkRelayChat1KBLimited(b *testing.B) {
	benchConf(b, chatAnswer(1<<10), 0, smallChat, false, true)
}

func BenchmarkRelayChat64KB(b *testing.B) { benchPair(b, chatAnswer(64<<10), 0, smallChat) }

func BenchmarkRelayEmbeddings1MB(b *testing.B) {
	benchPair(b, chatAnswer(1<<20), 0, `{"input":"hello world"}`)
}

func BenchmarkRelayStream200Events(b *testing.B) {
	benchPair(b, nil, 200, `{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
}

// BenchmarkFilterHotPath is the per-request work of the pre-req filter
// after warm-up: a conf lookup and a ticket.
func BenchmarkFilterHotPath(b *testing.B) {
	p := New(Options{})
	c := ParseConf([]byte(`{"provider":"openai","auth":{}}`))
	p.confs.put(c)
	b.ReportAllocs()
	for b.Loop() {
		p.confs.put(c)
		_ = p.tickets.mint(c.ID)
	}
}

// BenchmarkRelayRequest8MB shows the memory one large request costs: B/op
// of the relay column divided by the 8 MiB body is the runner's copies of
// it (the read body, the options patch, the client side of this harness).
func BenchmarkRelayRequest8MB(b *testing.B) {
	benchPair(b, chatAnswer(1<<10), 0, `{"messages":[{"role":"user","content":"`+strings.Repeat("a", 8<<20)+`"}]}`)
}

// benchTranslated runs one OpenAI-style upstream through the relay twice:
// an OpenAI chat client (the same protocol, passed through) and an
// Anthropic Messages client (translated both ways). The difference is the
// translation's cost; over 200 events, per event.
func benchTranslated(b *testing.B, answer []byte, events int) {
	up := benchUpstream(answer, events)
	defer up.Close()
	p := New(Options{})
	defer p.Close()
	c := ParseConf([]byte(`{"provider":"openai","auth":{"header":{"Authorization":"Bearer k"}},"options":{"model":"gpt-4"},"override":{"endpoint":"` + up.URL + `"}}`))
	if c.Err != nil {
		b.Fatal(c.Err)
	}
	p.confs.put(c)
	relay := httptest.NewServer(p)
	defer relay.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	stream := events > 0
	run := func(b *testing.B, path, reqBody string, hdr ...string) {
		body := []byte(reqBody)
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("POST", relay.URL+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(TicketHeader, p.tickets.mint(c.ID))
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n == 0 {
				b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
			}
		}
	}
	b.Run("same-protocol", func(b *testing.B) {
		run(b, "/v1/chat/completions", fmt.Sprintf(`{"messages":[{"role":"user","content":"What is 1+1?"}],"max_tokens":64,"stream":%t}`, stream))
	})
	b.Run("translated", func(b *testing.B) {
		run(b, "/v1/messages", fmt.Sprintf(`{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"What is 1+1?"}],"stream":%t}`, stream),
			"anthropic-version", "2023-06-01")
	})
}

// BenchmarkTranslateChat1KB: a whole 1 KB answer, OpenAI chat client
// against Anthropic Messages client on the same OpenAI-style upstream.
func BenchmarkTranslateChat1KB(b *testing.B) { benchTranslated(b, chatAnswer(1<<10), 0) }

// BenchmarkTranslateStream200Events: the same for a stream of 200 events.
func BenchmarkTranslateStream200Events(b *testing.B) { benchTranslated(b, nil, 200) }

// Package fakes holds offline stand-ins for the LLM providers and for
// Google's OAuth2 token endpoint. They check what they receive and answer
// with the providers' wire formats (../shared/providers.md).
package fakes

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// ProviderOptions pick the provider a fake plays.
type ProviderOptions struct {
	// Flavor: "openai" (default), "deepseek", "azure", "gemini", "vertex":
	// error shapes and answer details of their OpenAI-style surfaces.
	// "anthropic" is the Messages API (anthropic.go) and "gemini-native"
	// Google's generateContent (gemini_native.go); each checks its own
	// paths and credentials.
	Flavor string
	// Keys are the accepted credentials, header name → exact value; a
	// request must carry one. Empty = no check.
	Keys map[string]string
	// TokenCheck validates "Authorization: Bearer <token>" (vertex, and
	// gemini-native's Vertex paths; its Gemini API paths also take the
	// x-goog-api-key of Keys as ?key=).
	TokenCheck func(token string) bool
	// ModelAlias maps a requested model to the answered one (gpt-4 → gpt-4-0613).
	ModelAlias map[string]string
	// Reply is the assistant's text; default "1+1 equals 2.".
	Reply string
}

// Request is what a fake received.
type Request struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
	// Canceled is set when the caller went away before the answer ended.
	Canceled bool
}

// Reply scripts one answer.
type Reply struct {
	Status int
	Header http.Header
	Body   string
	// Events are SSE data payloads, each sent as "data: <e>\n\n" and flushed
	// (anthropic: "event: <e's type>\n" first; gemini-native: "\r\n\r\n").
	Events []string
	// Raw chunks are written and flushed as they are.
	Raw []string
	// Gate, when set, holds everything after the first event or chunk.
	Gate <-chan struct{}
	// Gates hold chunk i until Gates[i] is closed: event by event delivery.
	Gates map[int]<-chan struct{}
	// StallBeforeHeaders holds the answer before anything is written.
	StallBeforeHeaders <-chan struct{}
	// Delay waits this long before answering (a slow failure).
	Delay time.Duration
	// StallAfter > 0 blocks after that many events until the caller leaves.
	StallAfter int
	// Hijack takes over the connection (resets, garbage).
	Hijack func(conn net.Conn, rw io.ReadWriter)
}

// Provider is a fake LLM provider.
type Provider struct {
	URL  string
	opts ProviderOptions
	srv  *httptest.Server

	mu       sync.Mutex
	requests []Request
	script   []Reply
	always   *Reply        // answers every unscripted request while set
	done     chan struct{} // closed by Close: releases stalled handlers
	finished chan int      // index of each request whose handler ended
}

// NewProvider makes a fake without a listener: serve it with ServeHTTP.
func NewProvider(opts ProviderOptions) *Provider {
	if opts.Flavor == "" {
		opts.Flavor = "openai"
	}
	if opts.Reply == "" {
		opts.Reply = "1+1 equals 2."
	}
	return &Provider{opts: opts, done: make(chan struct{}), finished: make(chan int, 1024)}
}

// StartProvider is NewProvider listening on 127.0.0.1.
func StartProvider(opts ProviderOptions) *Provider {
	p := NewProvider(opts)
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	return p
}

// Close releases stalled handlers and stops the listener.
func (p *Provider) Close() {
	p.mu.Lock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.mu.Unlock()
	if p.srv != nil {
		p.srv.CloseClientConnections()
		p.srv.Close()
	}
}

// Always answers every request that has no scripted reply with rep, until
// called with nil (then the fake answers normally again).
func (p *Provider) Always(rep *Reply) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.always = rep
}

// Script queues answers for the next requests.
func (p *Provider) Script(replies ...Reply) {
	p.mu.Lock()
	p.script = append(p.script, replies...)
	p.mu.Unlock()
}

// Requests returns what was received, in order.
func (p *Provider) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Last is the newest request.
func (p *Provider) Last() (Request, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.requests) == 0 {
		return Request{}, false
	}
	return p.requests[len(p.requests)-1], true
}

// Count is how many requests arrived.
func (p *Provider) Count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.requests)
}

// Finished delivers the index of each request whose handler has returned,
// so tests can wait for one without sleeping.
func (p *Provider) Finished() <-chan int { return p.finished }

// WaitFinished waits until request i's handler has returned.
func (p *Provider) WaitFinished(i int, timeout time.Duration) (Request, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case n := <-p.finished:
			if n == i {
				return p.Requests()[i], true
			}
		case <-deadline:
			return Request{}, false
		}
	}
}

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	idx := len(p.requests)
	p.requests = append(p.requests, Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), Body: body,
	})
	reply := p.always
	if len(p.script) > 0 {
		reply = &p.script[0]
		p.script = p.script[1:]
	}
	p.mu.Unlock()
	defer func() {
		if r.Context().Err() != nil {
			p.mu.Lock()
			p.requests[idx].Canceled = true
			p.mu.Unlock()
		}
		select {
		case p.finished <- idx:
		default:
		}
	}()

	if reply != nil {
		p.play(w, r, reply)
		return
	}
	switch p.opts.Flavor {
	case "anthropic":
		p.anthropic(w, r, body)
		return
	case "gemini-native":
		p.geminiNative(w, r, body)
		return
	}
	if !p.authorized(r) {
		p.authError(w)
		return
	}
	switch {
	case r.Method != http.MethodPost:
		p.apiError(w, 404, "not_found", "unknown path "+r.URL.Path)
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		p.chat(w, r, body)
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		p.embeddings(w, body)
	case strings.HasSuffix(r.URL.Path, ":predict"):
		p.predict(w, r, body)
	case strings.HasSuffix(r.URL.Path, ":embedContent"):
		p.embedContent(w, r, body)
	case p.opts.Flavor == "openai" && isResponses(r.URL.Path):
		p.responses(w, r, body)
	default:
		p.apiError(w, 404, "not_found", "unknown path "+r.URL.Path)
	}
}

func (p *Provider) authorized(r *http.Request) bool {
	if p.opts.TokenCheck != nil {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && p.opts.TokenCheck(tok)
	}
	if len(p.opts.Keys) == 0 {
		return true
	}
	for name, want := range p.opts.Keys {
		if got := r.Header.Values(name); len(got) == 1 && got[0] == want {
			return true
		}
	}
	return false
}

// wait blocks on ch until it closes, the caller leaves or the fake closes.
func (p *Provider) wait(r *http.Request, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
	case <-p.done:
	}
	return false
}

func (p *Provider) play(w http.ResponseWriter, r *http.Request, rep *Reply) {
	if rep.Delay > 0 {
		t := time.NewTimer(rep.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-p.done:
			return
		}
	}
	if rep.StallBeforeHeaders != nil && !p.wait(r, rep.StallBeforeHeaders) {
		return
	}
	if rep.Hijack != nil {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err == nil {
			defer conn.Close()
			rep.Hijack(conn, rw)
		}
		return
	}
	for k, v := range rep.Header {
		w.Header()[k] = v
	}
	chunks := append([]string(nil), rep.Raw...) // a copy: Always replays one Reply for every call
	for _, e := range rep.Events {
		chunks = append(chunks, p.frameFor(r, e))
	}
	if len(rep.Events) > 0 && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/event-stream")
	}
	status := rep.Status
	if status == 0 {
		status = 200
	}
	w.WriteHeader(status)
	io.WriteString(w, rep.Body)
	rc := http.NewResponseController(w)
	for i, c := range chunks {
		if rep.StallAfter > 0 && i == rep.StallAfter {
			p.wait(r, nil)
			return
		}
		if g := rep.Gates[i]; g != nil && !p.wait(r, g) {
			return
		}
		if _, err := io.WriteString(w, c); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		if i == 0 && rep.Gate != nil && !p.wait(r, rep.Gate) {
			return
		}
	}
}

// frame is one SSE event as the flavor sends it.
func (p *Provider) frame(e string) string {
	switch p.opts.Flavor {
	case "anthropic":
		return anthropicFrame(e)
	case "gemini-native":
		return "data: " + e + "\r\n\r\n"
	}
	return "data: " + e + "\n\n"
}

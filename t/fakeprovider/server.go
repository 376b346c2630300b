// Package fakeprovider is an offline stand-in for the LLM providers the relay
// talks to: OpenAI, DeepSeek, Azure OpenAI, Gemini's OpenAI-compatible surface,
// Vertex AI (OpenAI-compatible chat and :predict embeddings) and any
// OpenAI-compatible server. It answers with each provider's own body shapes,
// SSE framing, usage fields and error bodies (see /work/shared/providers.md),
// records every request, and can be scripted to misbehave (stalls, gates,
// broken streams, raw connection abuse) so relay tests need no network.
//
// It does not import testing: the quickstart program uses it too. Every
// blocking path ends on Close, so a test or program that calls Close leaves no
// goroutine behind.
package fakeprovider

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures the default (unscripted) behaviour.
type Options struct {
	// Keys are the accepted credentials, header name → exact value, for
	// example {"Authorization": "Bearer sk-test"} or {"api-key": "az-key"}.
	// A request must carry exactly one value for one of these headers, equal
	// to the configured value (header names are case-insensitive). Empty
	// means no key check.
	Keys map[string]string
	// Flavor is "openai" (default), "deepseek", "azure", "gemini" or
	// "vertex". It picks error shapes, usage fields and stream details.
	Flavor string
	// ModelAlias maps a request model to the model the response names (the
	// seed shows gpt-4 → gpt-4-0613). Unmapped models are echoed. For Azure
	// deployment paths the key is the deployment name.
	ModelAlias map[string]string
	// TokenCheck, when set, requires `Authorization: Bearer <token>` with a
	// token it accepts (Vertex: wire it to faketoken.Server.Valid). It is
	// checked in addition to Keys.
	TokenCheck func(bearer string) bool
	// Reply is the canned assistant text; DefaultReply when empty.
	Reply string
}

// Request is one request as the fake received it.
type Request struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
	// Canceled: the handler saw the request context end before it had
	// written everything (client gone, relay cancelled the upstream call).
	Canceled bool
	// Finished: the handler has returned. Requests still in flight (held
	// by a Gate or a stall) are recorded with Finished false.
	Finished bool
}

// Server is the fake. Start gives a listening one; NewHandler one to mount
// behind another server (such as tlsproxy).
type Server struct {
	// URL is http://127.0.0.1:port for Start, empty for NewHandler.
	URL string

	opts   Options
	flavor *flavor
	ts     *httptest.Server
	seq    atomic.Int64

	// ctx ends on Close; every wait in a handler also selects on it, so
	// Close releases gates, stalls and hijacked connections.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // Add only under mu while !closed, so Close's Wait is safe
	reqs     []*Request
	script   []Reply
	changed  chan struct{} // closed and replaced when a request arrives or finishes (for Wait)
}

// Start serves a new fake on 127.0.0.1 over plain HTTP.
func Start(opts Options) *Server {
	s := NewHandler(opts)
	s.ts = httptest.NewServer(s)
	s.URL = s.ts.URL
	return s
}

// NewHandler returns a fake that does not listen: mount s (an http.Handler)
// on any server. Close still releases its stalled handlers and waits for
// them. It panics on an unknown Flavor, which is a programming error.
func NewHandler(opts Options) *Server {
	f, ok := flavors[strings.ToLower(opts.Flavor)]
	if !ok {
		panic(fmt.Sprintf("fakeprovider: unknown Flavor %q", opts.Flavor))
	}
	if opts.Reply == "" {
		opts.Reply = DefaultReply
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{opts: opts, flavor: f, ctx: ctx, cancel: cancel, changed: make(chan struct{})}
}

// ServeHTTP records the request, then answers with the next scripted Reply
// or, when none is queued, like the configured provider.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body before anything else: recording needs it, and a reply
	// written before the body is drained can make Go's server close the
	// connection, which would look like a provider fault to the relay.
	body, _ := io.ReadAll(r.Body)
	rec := &Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), Body: body,
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "fakeprovider: closed", http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	s.reqs = append(s.reqs, rec)
	s.notify()
	var scripted *Reply
	if len(s.script) > 0 {
		scripted = &s.script[0]
		s.script = s.script[1:]
	}
	s.mu.Unlock()

	w.Header().Set("X-Request-Id", fmt.Sprintf("req-fake-%d", s.seq.Add(1)))
	var canceled bool
	if scripted != nil {
		// Scripted replies are served as given, without auth or body
		// checks: tests script exactly what the provider says. The request
		// is still recorded so its headers can be asserted.
		canceled = s.writeReply(w, r, *scripted)
	} else {
		canceled = s.serveDefault(w, r, body)
	}

	s.mu.Lock()
	rec.Canceled, rec.Finished = canceled, true
	s.notify()
	s.mu.Unlock()
}

// Close stops the listener (Start), releases every gate and stall, closes
// hijacked connections and waits until all handlers have returned. Later
// requests (NewHandler mounted elsewhere) get 503.
func (s *Server) Close() {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return
	}
	s.cancel()
	if s.ts != nil {
		// Drop active connections too: a client that stopped reading must
		// not keep a streaming handler (and httptest's Close) waiting.
		s.ts.CloseClientConnections()
		s.ts.Close()
	}
	s.inflight.Wait()
}

// Requests returns a copy of everything received since the last Reset, in
// arrival order (in-flight requests included).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

func (s *Server) snapshot() []Request {
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = *r
		out[i].Header = r.Header.Clone()
		out[i].Body = append([]byte(nil), r.Body...)
	}
	return out
}

// Last returns the most recent request.
func (s *Server) Last() (Request, bool) {
	reqs := s.Requests()
	if len(reqs) == 0 {
		return Request{}, false
	}
	return reqs[len(reqs)-1], true
}

// Count is the number of requests received since the last Reset.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// Reset forgets recorded requests and queued scripted replies. Requests in
// flight finish normally but are no longer counted.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs, s.script = nil, nil
}

// Script queues replies: the next requests get them in order, whatever their
// path or credentials; then default behaviour resumes.
func (s *Server) Script(replies ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, replies...)
}

// Wait blocks until at least n requests received since the last Reset have
// finished (their handlers returned), so tests can check Canceled or the
// final request list without sleeping. It returns Requests() at that point,
// or an error after timeout or on Close.
func (s *Server) Wait(n int, timeout time.Duration) ([]Request, error) {
	return s.waitFor("finished", n, timeout, func(r *Request) bool { return r.Finished })
}

// WaitReceived is Wait for requests that have arrived, finished or not:
// "the relay has called the provider and the handler now holds the call".
func (s *Server) WaitReceived(n int, timeout time.Duration) ([]Request, error) {
	return s.waitFor("received", n, timeout, func(*Request) bool { return true })
}

func (s *Server) waitFor(what string, n int, timeout time.Duration, counts func(*Request) bool) ([]Request, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		have := 0
		for _, r := range s.reqs {
			if counts(r) {
				have++
			}
		}
		if have >= n {
			reqs := s.snapshot()
			s.mu.Unlock()
			return reqs, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return nil, fmt.Errorf("fakeprovider: %d of %d requests %s within %v", have, n, what, timeout)
		case <-s.ctx.Done():
			return nil, fmt.Errorf("fakeprovider: closed while waiting for %d requests %s (%d so far)", n, what, have)
		}
	}
}

// notify wakes waiters; called with s.mu held after any change they count.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// authorized applies Options.Keys and Options.TokenCheck. It also returns the
// credential the request presented, for the provider's error message.
func (s *Server) authorized(r *http.Request) (ok bool, presented string) {
	presented = presentedCredential(r.Header)
	if len(s.opts.Keys) > 0 {
		ok = false
		for name, want := range s.opts.Keys {
			if v := r.Header.Values(name); len(v) == 1 && v[0] == want {
				ok = true
				break
			}
		}
		if !ok {
			return false, presented
		}
	}
	if s.opts.TokenCheck != nil {
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 {
			return false, presented
		}
		tok, bearer := strings.CutPrefix(auth[0], "Bearer ")
		if !bearer || !s.opts.TokenCheck(tok) {
			return false, presented
		}
	}
	return true, presented
}

// presentedCredential is whatever key-like value the request carries.
func presentedCredential(h http.Header) string {
	if a := h.Get("Authorization"); a != "" {
		return strings.TrimPrefix(a, "Bearer ")
	}
	for _, name := range []string{"Api-Key", "X-Goog-Api-Key"} {
		if v := h.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// serveDefault answers like the configured provider. It reports whether the
// request context ended before the answer was complete.
func (s *Server) serveDefault(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if ok, presented := s.authorized(r); !ok {
		return s.fail(w, s.flavor.unauthorized(presented))
	}
	if r.Method != http.MethodPost {
		return s.fail(w, s.flavor.notFound(r.Method, r.URL.Path))
	}
	if s.flavor.vertex {
		return s.serveVertex(w, r, body)
	}
	path := r.URL.Path
	deployment := ""
	if s.flavor.azure {
		if dep, ok := azureDeployment(path); ok {
			if r.URL.Query().Get("api-version") == "" {
				return s.fail(w, apiError{http.StatusBadRequest, AzureError("MissingApiVersionParameter",
					"The api-version query parameter (?api-version=) is required for all requests.")})
			}
			deployment = dep
		}
	}
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return s.chat(w, r, body, deployment)
	case strings.HasSuffix(path, "/embeddings"):
		return s.embeddings(w, body, deployment)
	}
	return s.fail(w, s.flavor.notFound(r.Method, path))
}

// azureDeployment extracts {dep} from the classic
// /openai/deployments/{dep}/... path.
func azureDeployment(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/openai/deployments/")
	if !ok {
		return "", false
	}
	dep, _, ok := strings.Cut(rest, "/")
	return dep, ok && dep != ""
}

// responseModel is the model the answer names: the alias of the deployment
// (Azure classic paths ignore the body's model) or of the requested model.
func (s *Server) responseModel(requested, deployment, azureDefault string) string {
	if deployment != "" {
		if m, ok := s.opts.ModelAlias[deployment]; ok {
			return m
		}
		return azureDefault
	}
	if m, ok := s.opts.ModelAlias[requested]; ok {
		return m
	}
	return requested
}

// fail writes a rendered provider error; it never counts as a cancellation.
func (s *Server) fail(w http.ResponseWriter, e apiError) bool {
	writeJSON(w, e.status, e.body)
	return false
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// hostOnly strips a port from a Host header value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

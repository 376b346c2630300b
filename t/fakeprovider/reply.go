package fakeprovider

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// Reply is one scripted answer (see Server.Script). The parts are written in
// this order: headers and Status, Body, Events, then Raw.
type Reply struct {
	Status int         // default 200
	Header http.Header // copied onto the response
	// Body is written as-is. Content-Type defaults to application/json when
	// Body is set and there are no Events or Raw chunks.
	Body string
	// Events are SSE data payloads: each is written as "data: <elem>\n\n"
	// and flushed. Add "[DONE]" yourself. Content-Type defaults to
	// text/event-stream when Events or Raw are set.
	Events []string
	// Raw chunks are written and flushed as-is: comments, "\r\n\r\n"
	// framing, blank lines, truncated events.
	Raw []string
	// Interval is the pause between two events/chunks.
	Interval time.Duration
	// Gate: write and flush the first event/chunk (just the headers if
	// there is none), then wait until Gate is closed, the request context
	// ends or the server closes, before writing the rest.
	Gate <-chan struct{}
	// StallBeforeHeaders: wait for it (or the request context / Close)
	// before writing anything.
	StallBeforeHeaders <-chan struct{}
	// StallAfter > 0: after that many events/chunks, block until the
	// request context ends (or Close) and write nothing more — a provider
	// that hangs mid-stream.
	StallAfter int
	// Hijack takes over the raw connection: reset it, write invalid HTTP,
	// close without an answer. The connection is closed when Hijack
	// returns, and on Close while it runs.
	Hijack func(conn net.Conn)
}

// chunks is what the reply writes after the headers, in order.
func (rep *Reply) chunks() []string {
	out := make([]string, 0, len(rep.Events)+len(rep.Raw))
	for _, e := range rep.Events {
		out = append(out, "data: "+e+"\n\n")
	}
	return append(out, rep.Raw...)
}

// writeReply writes rep and reports whether the request context ended
// before everything was written. Both scripted replies and the default
// streams go through here, so every stream the fake sends is flushed the
// same way.
func (s *Server) writeReply(w http.ResponseWriter, r *http.Request, rep Reply) (canceled bool) {
	ctx := r.Context()
	if rep.Hijack != nil {
		s.hijack(w, rep.Hijack)
		return false
	}
	if rep.StallBeforeHeaders != nil && !s.wait(ctx, rep.StallBeforeHeaders) {
		return ctx.Err() != nil
	}

	h := w.Header()
	for k, vs := range rep.Header {
		h.Del(k)
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	chunks := rep.chunks()
	if h.Get("Content-Type") == "" {
		switch {
		case len(chunks) > 0:
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
		case rep.Body != "":
			h.Set("Content-Type", "application/json")
		}
	}
	status := rep.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if rep.Body != "" {
		io.WriteString(w, rep.Body)
	}
	if len(chunks) == 0 && rep.Gate == nil && rep.StallAfter == 0 {
		return false // a plain reply: let the server add Content-Length
	}

	rc := http.NewResponseController(w)
	rc.Flush() // headers now: a streaming client must see the 200 before the first event
	if len(chunks) == 0 && rep.Gate != nil && !s.wait(ctx, rep.Gate) {
		return ctx.Err() != nil
	}
	for i, c := range chunks {
		// Checked before each write, never after the last one: a client
		// that hangs up right after [DONE] did not cancel anything.
		if ctx.Err() != nil {
			return true
		}
		if i > 0 && rep.Interval > 0 && !s.sleep(ctx, rep.Interval) {
			return ctx.Err() != nil
		}
		io.WriteString(w, c)
		rc.Flush()
		if i == 0 && rep.Gate != nil && !s.wait(ctx, rep.Gate) {
			return ctx.Err() != nil
		}
		if i+1 == rep.StallAfter {
			s.wait(ctx, nil)
			return ctx.Err() != nil
		}
	}
	return false
}

// wait blocks until ch is closed (a nil ch never is), the request ends or
// the server closes. It reports whether ch was the reason.
func (s *Server) wait(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	return false
}

// sleep is time.Sleep that ends early on request end or Close.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	return false
}

// hijack hands the raw connection to fn and closes it afterwards. A Close
// of the server while fn runs closes the connection too, so an fn blocked
// on reading it returns.
func (s *Server) hijack(w http.ResponseWriter, fn func(net.Conn)) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "fakeprovider: cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	fn(conn)
}

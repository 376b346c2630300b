package aiproxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// eventReaders are reused between streams: a stream holds one only while it
// runs, and most events fit its buffer.
var eventReaders = sync.Pool{New: func() any { return providers.NewEventReader(nil, 4096) }}

// stream relays a server-sent-event answer event by event, flushing each as
// soon as it is complete. The response headers wait for the first data
// event, so they can carry the time to first token and the model; comments
// before it (DeepSeek's ": keep-alive" while queued) go out with it.
func (p *Plugin) stream(w http.ResponseWriter, r *http.Request, c *call, dl *deadline, firstByte *time.Timer, resp *http.Response, sent time.Time, o *outcome) {
	er := eventReaders.Get().(*providers.EventReader)
	er.Reset(resp.Body)
	defer func() {
		er.Reset(nil)
		eventReaders.Put(er)
	}()
	rc := http.NewResponseController(w)
	var pending []byte
	started := false
	var idle *time.Timer

	for {
		raw, err := er.Next()
		if idle != nil {
			idle.Reset(c.conf.StreamIdle)
		}
		if len(raw) > 0 {
			data, hasData := providers.EventData(raw)
			send := true
			switch {
			case !hasData:
			case providers.IsDone(data):
				c.sawDone = true
			default:
				c.obs.Observe(data)
				// The usage event the relay asked for on the client's
				// behalf stays with the relay.
				send = !(c.usageAdded && providers.IsUsageOnly(data))
			}
			if !started && !hasData {
				pending = append(pending, raw...)
				send = false
			}
			if !started && hasData {
				idle, started = p.beginStream(w, c, dl, firstByte, resp, sent, o), true
				defer p.metrics.streamEnded()
				if !p.write(w, rc, c, pending) {
					return
				}
			}
			if send && !p.write(w, rc, c, raw) {
				return
			}
			if limit := c.conf.MaxResponseBytes; limit > 0 && c.bytesOut > limit {
				streamTooLong(c, limit)
			}
		}
		if err == nil {
			continue
		}
		if !(errors.Is(err, io.EOF) && started) { // a stream without [DONE] ends at EOF; the log tells
			streamFailed(r, c, dl, o, err, started)
		}
		return
	}
}

// beginStream sends a stream's response headers with its first event and
// starts its idle timer (nil without stream_idle_timeout_ms); the caller
// defers p.metrics.streamEnded.
//
//go:noinline
func (p *Plugin) beginStream(w http.ResponseWriter, c *call, dl *deadline, firstByte *time.Timer, resp *http.Response, sent time.Time, o *outcome) (idle *time.Timer) {
	firstByte.Stop()
	c.ttft = time.Since(sent)
	p.startStream(w, c, resp)
	if c.conf.StreamIdle > 0 {
		idle = dl.after(c.conf.StreamIdle, "stream_idle_timeout_ms")
	}
	p.metrics.streamStarted()
	o.written, o.status = true, resp.StatusCode
	return idle
}

// streamFailed records how a stream's read failed: before its first event
// the caller may still answer or fall back; after it the client's response
// is broken rather than ended cleanly, as a truncated stream must not look
// complete.
//
//go:noinline
func streamFailed(r *http.Request, c *call, dl *deadline, o *outcome, err error, started bool) {
	switch {
	case errors.Is(err, io.EOF) && !started:
		o.err = errInvalidAnswer{c.provider + " stream ended before its first event"}
	case !started:
		o.err, o.limit = err, dl.which()
	case r.Context().Err() != nil && dl.which() == "":
		c.errKind, c.errMsg = "client_closed", "client closed the stream"
	default:
		c.errKind = "upstream_stream_broken"
		if limit := dl.which(); limit != "" {
			c.errKind = "stream_limit"
		}
		c.errMsg = describeNetErr(err)
		panic(http.ErrAbortHandler)
	}
}

func (p *Plugin) startStream(w http.ResponseWriter, c *call, resp *http.Response) {
	h := w.Header()
	copyHeaders(h, resp.Header, dropResponse)
	if c.writer != nil {
		h.Set("Content-Type", c.writer.StreamContentType())
	}
	setLLMHeaders(h, c, false)
	// APISIX proxies with nginx response buffering on; this header turns it
	// off for this answer so every event reaches the client at once.
	h.Set("X-Accel-Buffering", "no")
	h.Set("Cache-Control", "no-cache")
	c.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
}

func (p *Plugin) write(w http.ResponseWriter, rc *http.ResponseController, c *call, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	n, err := w.Write(b)
	c.bytesOut += int64(n)
	if err == nil {
		err = rc.Flush()
	}
	if err != nil {
		c.errKind, c.errMsg = "client_closed", "client closed the stream"
		return false
	}
	return true
}

// streamTooLong cuts a stream past max_response_bytes (out of line: see
// hostOf).
//
//go:noinline
func streamTooLong(c *call, limit int64) {
	c.errKind, c.errMsg = "stream_limit", fmt.Sprintf("stream passed max_response_bytes %d", limit)
	panic(http.ErrAbortHandler)
}

// frameSource yields a stream's events one at a time: name, data payload
// and the raw bytes to pass through. It hides whether the provider framed
// them as server-sent events or AWS event-stream messages.
type frameSource interface {
	next() (name string, data, raw []byte, hasData bool, err error)
}

type sseFrames struct{ er *providers.EventReader }

func (s sseFrames) next() (string, []byte, []byte, bool, error) {
	raw, err := s.er.Next()
	data, ok := providers.EventData(raw)
	name := ""
	if ok {
		name = providers.EventName(raw)
	}
	return name, data, raw, ok, err
}

// awsFrames reads AWS event-stream messages; capture keeps each message's
// bytes as read, for a Converse client that gets them unchanged.
type awsFrames struct {
	es      *providers.EventStreamReader
	capture *captureReader
}

func (a awsFrames) next() (string, []byte, []byte, bool, error) {
	a.capture.buf = a.capture.buf[:0]
	name, payload, err := a.es.Next()
	return name, payload, a.capture.buf, err == nil, err
}

type captureReader struct {
	r   io.Reader
	buf []byte
}

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.buf = append(c.buf, p[:n]...)
	return n, err
}

// streamFrames relays a stream the relay reads in the provider's protocol
// (Anthropic, Responses, Converse, Gemini, or OpenAI chat for a client of
// another protocol): usage sits in protocol-specific events, and a client
// of another protocol gets each event translated as it arrives, one event
// in, its translation flushed out.
func (p *Plugin) streamFrames(w http.ResponseWriter, r *http.Request, c *call, dl *deadline, firstByte *time.Timer, resp *http.Response, sent time.Time, o *outcome, aws bool) {
	var src frameSource
	if aws {
		capture := &captureReader{r: resp.Body}
		src = awsFrames{es: providers.NewEventStreamReader(capture), capture: capture}
	} else {
		er := eventReaders.Get().(*providers.EventReader)
		er.Reset(resp.Body)
		defer func() {
			er.Reset(nil)
			eventReaders.Put(er)
		}()
		src = sseFrames{er}
	}
	dec := c.reader.NewDecoder()
	var enc protocols.Encoder
	if c.writer != nil {
		enc = c.writer.NewEncoder(c.hub)
	}
	rc := http.NewResponseController(w)
	var deltas []protocols.Delta
	var out, pending []byte
	started := false
	var idle *time.Timer
	for {
		name, data, raw, hasData, err := src.next()
		if idle != nil {
			idle.Reset(c.conf.StreamIdle)
		}
		var done bool
		var derr error
		if hasData {
			deltas, done, derr = dec.Event(deltas[:0], name, data)
			for i := range deltas {
				c.obs.ObserveHub(deltas[i].Model, deltas[i].Usage)
			}
		}
		if enc == nil && !started && !hasData && len(raw) > 0 {
			pending = append(pending, raw...) // comments before the first event
		}
		if hasData && !started && (derr == nil || enc == nil) {
			idle, started = p.beginStream(w, c, dl, firstByte, resp, sent, o), true
			defer p.metrics.streamEnded()
			if !p.write(w, rc, c, pending) {
				return
			}
		}
		if started {
			if enc == nil {
				if hasData && !p.write(w, rc, c, raw) {
					return
				}
			} else {
				out = out[:0]
				for i := range deltas {
					out = enc.Delta(out, &deltas[i])
				}
				if done {
					out = enc.End(out)
				}
				if !p.write(w, rc, c, out) {
					return
				}
			}
			if limit := c.conf.MaxResponseBytes; limit > 0 && c.bytesOut > limit {
				streamTooLong(c, limit)
			}
		}
		if derr != nil {
			if !started {
				o.err = errInvalidAnswer{c.provider + " stream failed before its first event: " + derr.Error()}
				return
			}
			// The provider's own error event went through as it was; a
			// translated stream is cut, as a truncated stream must not
			// look complete.
			c.errKind, c.errMsg = "upstream_stream_error", derr.Error()
			if enc != nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
		if done {
			c.sawDone = true
			return
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) && started {
			// Gemini ends its streams at EOF; others end with an event,
			// and the log tells when it never came.
			if enc != nil {
				c.sawDone = c.upProto == protocols.GenerateContent
				p.write(w, rc, c, enc.End(out[:0]))
			}
			return
		}
		streamFailed(r, c, dl, o, err, started)
		return
	}
}

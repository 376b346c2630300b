package aiproxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
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
				firstByte.Stop()
				c.ttft = time.Since(sent)
				p.startStream(w, c, resp)
				started = true
				if c.conf.StreamIdle > 0 {
					idle = dl.after(c.conf.StreamIdle, "stream_idle_timeout_ms")
				}
				p.metrics.streamStarted()
				defer p.metrics.streamEnded()
				o.written, o.status = true, resp.StatusCode
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
		switch {
		case errors.Is(err, io.EOF) && started:
			return // a stream without [DONE] ends at EOF; the log tells
		case errors.Is(err, io.EOF):
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
			// Break the client's response rather than end it cleanly: a
			// truncated stream must not look complete.
			panic(http.ErrAbortHandler)
		}
		return
	}
}

func (p *Plugin) startStream(w http.ResponseWriter, c *call, resp *http.Response) {
	h := w.Header()
	copyHeaders(h, resp.Header, dropResponse)
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

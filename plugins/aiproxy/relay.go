package aiproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// call is the state of one relayed request.
type call struct {
	start        time.Time
	conf         *Conf
	provider     string
	api          providers.API
	requestModel string
	stream       bool
	usageAdded   bool
	upstreamHost string

	status   int
	ttft     time.Duration
	obs      providers.Observation
	bytesIn  int64
	bytesOut int64
	errKind  string
	errMsg   string
	// sawDone is false for a stream that ended without [DONE].
	sawDone bool
}

func (c *call) model() string {
	if c.obs.Model != "" {
		return c.obs.Model
	}
	return c.requestModel
}

// fail answers the client with an OpenAI-shaped JSON error.
func (c *call) fail(w http.ResponseWriter, status int, kind, msg string) {
	c.status, c.errKind, c.errMsg = status, kind, msg
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if c.provider != "" {
		h.Set(HeaderProvider, c.provider)
	}
	w.WriteHeader(status)
	_, _ = w.Write(errorBody(msg, kind, ""))
}

// ServeHTTP is the relay: APISIX proxies every ai-proxy route here. Only a
// request carrying a ticket from this process's filter is forwarded.
func (p *Plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{start: time.Now()}
	defer p.logCall(r, c)

	id, err := p.tickets.verify(r.Header.Get(TicketHeader))
	if err == nil {
		if c.conf = p.confs.get(id); c.conf == nil {
			err = errBadTicket
		}
	}
	if err != nil {
		c.fail(w, http.StatusForbidden, "invalid_ticket", err.Error()+"; the relay serves only requests sent by APISIX through an ai-proxy route")
		return
	}
	c.provider = c.conf.ProviderName

	body, status, err := readBody(r, c.conf.MaxReqBodySize)
	c.bytesIn = int64(len(body))
	if err != nil {
		c.fail(w, status, "invalid_request", err.Error())
		return
	}
	out, err := c.conf.Provider.Prepare(body)
	if err != nil {
		status, kind := http.StatusBadRequest, "invalid_request"
		var pe *providers.Error
		if errors.As(err, &pe) {
			status, kind = pe.Status, pe.Code
		}
		c.fail(w, status, kind, err.Error())
		return
	}
	c.api, c.requestModel, c.stream, c.usageAdded = out.API, out.Model, out.Stream, out.UsageAdded
	p.forward(w, r, c, out)
}

// readBody reads the client's JSON body, refusing more than limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, int, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q is not supported; send application/json", ct)
		}
	}
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes exceeds max_req_body_size %d", r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body exceeds max_req_body_size %d", limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, http.StatusBadRequest, errors.New("request body is empty; send an OpenAI-style JSON body")
	}
	return body, 0, nil
}

// deadline cancels a call's upstream request when one of its limits passes,
// and remembers which limit it was.
type deadline struct {
	cancel context.CancelFunc
	fired  atomic.Value // string: the limit that fired
	timers []*time.Timer
}

func (d *deadline) after(limit time.Duration, name string) *time.Timer {
	t := time.AfterFunc(limit, func() {
		d.fired.CompareAndSwap(nil, name)
		d.cancel()
	})
	d.timers = append(d.timers, t)
	return t
}

func (d *deadline) which() string {
	s, _ := d.fired.Load().(string)
	return s
}

func (d *deadline) stop() {
	for _, t := range d.timers {
		t.Stop()
	}
}

func (p *Plugin) forward(w http.ResponseWriter, r *http.Request, c *call, out *providers.Outbound) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	dl := &deadline{cancel: cancel}
	defer dl.stop()
	firstByte := dl.after(c.conf.Timeout, "timeout")
	if c.stream && c.conf.MaxStreamTime > 0 {
		dl.after(c.conf.MaxStreamTime, "max_stream_duration_ms")
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, out.URL, bytes.NewReader(out.Body))
	if err != nil {
		c.fail(w, http.StatusInternalServerError, "internal_error", "building upstream request: "+err.Error())
		return
	}
	c.upstreamHost = req.URL.Host
	copyHeaders(req.Header, r.Header, dropRequest)
	req.Header.Set("Content-Type", "application/json")
	if err := c.conf.Provider.Authorize(ctx, req); err != nil {
		c.fail(w, http.StatusBadGateway, "upstream_auth_failed", "could not obtain upstream credentials: "+err.Error())
		return
	}

	sent := time.Now()
	resp, err := p.transports.forConf(c.conf).RoundTrip(req)
	if err != nil {
		p.failUpstream(w, r, c, dl, err)
		return
	}
	defer resp.Body.Close()

	if c.stream && resp.StatusCode/100 == 2 && isEventStream(resp.Header) {
		p.stream(w, r, c, dl, firstByte, resp, sent)
		return
	}
	c.ttft = time.Since(sent)
	p.relayWhole(w, r, c, dl, resp)
}

func isEventStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/event-stream"
}

// failUpstream answers a call whose upstream request failed before any byte
// reached the client: 504 when a limit passed, 499 when the client left,
// 502 otherwise.
func (p *Plugin) failUpstream(w http.ResponseWriter, r *http.Request, c *call, dl *deadline, err error) {
	switch limit := dl.which(); {
	case limit != "":
		c.fail(w, http.StatusGatewayTimeout, "upstream_timeout", fmt.Sprintf("%s gave no answer within %s (%s)", c.provider, limitValue(c.conf, limit), limit))
	case r.Context().Err() != nil:
		c.status, c.errKind, c.errMsg = 499, "client_closed", "client closed the request"
	default:
		c.fail(w, http.StatusBadGateway, "upstream_unavailable", fmt.Sprintf("%s request failed: %s", c.provider, describeNetErr(err)))
	}
}

func limitValue(conf *Conf, limit string) time.Duration {
	if limit == "max_stream_duration_ms" {
		return conf.MaxStreamTime
	}
	return conf.Timeout
}

// describeNetErr drops the URL that url.Error would print: it may carry an
// auth.query key.
func describeNetErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// relayWhole relays an answer read whole: every non-stream answer and every
// error. Reading it first lets the usage go into the response headers.
func (p *Plugin) relayWhole(w http.ResponseWriter, r *http.Request, c *call, dl *deadline, resp *http.Response) {
	limit := c.conf.MaxResponseBytes
	if limit == 0 {
		limit = bufferedResponseCap
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		p.failUpstream(w, r, c, dl, err)
		return
	}
	if int64(len(body)) > limit {
		c.fail(w, http.StatusBadGateway, "upstream_response_too_large", fmt.Sprintf("%s answer exceeds %d bytes", c.provider, limit))
		return
	}
	dl.stop()
	ok := resp.StatusCode/100 == 2
	if conv, isConv := c.conf.Provider.(providers.ResponseConverter); ok && isConv && conv.Converts(c.api) {
		if body, err = conv.ConvertResponse(c.api, c.requestModel, resp.StatusCode, body); err != nil {
			c.fail(w, http.StatusBadGateway, "upstream_invalid_response", fmt.Sprintf("%s answer could not be converted: %v", c.provider, err))
			return
		}
	}
	if ok {
		c.obs.Observe(body)
	}
	h := w.Header()
	copyHeaders(h, resp.Header, dropResponse)
	setLLMHeaders(h, c, ok)
	h.Set("Content-Length", fmt.Sprint(len(body)))
	c.status = resp.StatusCode
	if !ok {
		c.errKind = "upstream_status"
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := w.Write(body)
	c.bytesOut = int64(n)
}

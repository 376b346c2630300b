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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// call is the state of one relayed request.
type call struct {
	id           string
	start        time.Time
	conf         *Conf
	inst         *Instance // the instance of the current attempt
	limits       *LimitConf
	reserved     []reservation // budgets the current attempt holds
	quotas       []quota       // and what its quota headers say
	refused      *refusal      // the last attempt the budgets refused
	cost         int64         // millionths; -1 = not priced
	provider     string
	api          providers.API
	requestModel string
	clientModel  string // the body's model, "" when it names none
	stream       bool
	usageAdded   bool
	upstreamHost string
	// proto is the client's protocol; client writes the relay's own errors
	// in it (nil: OpenAI's shape). upProto is the provider's protocol,
	// reader reads its answers and writer translates them for the client
	// (nil: passed through).
	proto   protocols.Protocol
	client  protocols.Client
	upProto protocols.Protocol
	reader  protocols.Upstream
	writer  protocols.Client
	hub     *protocols.Request

	status   int
	ttft     time.Duration
	obs      providers.Observation
	bytesIn  int64
	bytesOut int64
	errKind  string
	errMsg   string
	// sawDone is false for a stream that ended without [DONE].
	sawDone bool
	// attempts are the instances tried, in order; tries counts them while
	// the last one runs (headers go out before it is logged).
	attempts       []attemptLog
	tries          int
	fallbackReason string // why the call last moved on to another instance
	// reqBody and respBody are kept for the call log when the route's
	// logging.payloads is on.
	reqBody, respBody []byte
}

func (c *call) routeID() string {
	if c.conf == nil {
		return ""
	}
	if id := c.conf.routeID.Load(); id != nil {
		return *id
	}
	return ""
}

// providerProtocol is the protocol the provider was spoken to in.
func (c *call) providerProtocol() protocols.Protocol {
	switch {
	case c.upProto != "":
		return c.upProto
	case c.api == providers.Embeddings:
		return protocols.Embeddings
	case c.api == "":
		return ""
	}
	return protocols.ChatCompletions
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
	h.Set(HeaderCallID, c.id)
	if c.provider != "" {
		h.Set(HeaderProvider, c.provider)
	}
	setInstanceHeaders(h, c)
	w.WriteHeader(status)
	if c.client != nil {
		_, _ = w.Write(c.client.EncodeError(status, kind, msg))
		return
	}
	_, _ = w.Write(errorBody(msg, kind, ""))
}

// ServeHTTP is the relay: APISIX proxies every ai-proxy route here. Only a
// request carrying a ticket from this process's filter is forwarded.
func (p *Plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{start: time.Now(), id: p.callIDs.next(), cost: -1}
	defer p.logCall(r, c)
	body, reserved, ok := p.admitCall(w, r, c)
	if !ok {
		return
	}
	defer p.bodies.give(reserved)
	p.attempt(w, r, c, body)
}

// admitCall checks the tickets, the method and the body, and reads it
// within the runner's byte budget (give back reserved when done). Out of
// ServeHTTP's frame, which every open stream holds.
//
//go:noinline
func (p *Plugin) admitCall(w http.ResponseWriter, r *http.Request, c *call) (body []byte, reserved int64, ok bool) {
	id, err := p.tickets.use(r.Header.Get(TicketHeader))
	if err == nil {
		if c.conf = p.confs.get(id); c.conf == nil {
			err = errBadTicket
		}
	}
	if err != nil {
		c.fail(w, http.StatusForbidden, "invalid_ticket", err.Error()+"; the relay serves only requests sent by APISIX through an ai-proxy route")
		return nil, 0, false
	}
	if len(c.conf.Instances) == 1 {
		c.provider = c.conf.Instances[0].ProviderName
	}
	if c.limits, err = p.limitConfFor(r); err != nil {
		c.fail(w, http.StatusForbidden, "invalid_ticket", "rate-limit "+err.Error())
		return nil, 0, false
	}
	// Chat and embeddings are POSTs; the relay would send anything as one.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		c.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "only POST is relayed")
		return nil, 0, false
	}

	// Bodies in flight share one budget, so many large requests at once
	// are refused instead of taking the process's memory.
	reserved = r.ContentLength
	if reserved < 0 || reserved > c.conf.MaxReqBodySize {
		// No length (nginx always sends one; this is a direct test client):
		// reserve a share, the read is capped by max_req_body_size anyway.
		reserved = min(c.conf.MaxReqBodySize, 1<<20)
	}
	if !p.bodies.take(reserved) {
		w.Header().Set("Retry-After", "1")
		c.fail(w, http.StatusServiceUnavailable, "runner_busy", "too many request bytes in flight in this runner; retry shortly")
		return nil, 0, false
	}
	body, status, err := readBody(r, c.conf.MaxReqBodySize)
	c.bytesIn = int64(len(body))
	if err != nil {
		p.bodies.give(reserved)
		c.fail(w, status, "invalid_request", err.Error())
		return nil, 0, false
	}
	c.proto = protocols.Detect(r.URL.Path, r.Header, body)
	if c.proto != protocols.ChatCompletions && c.proto != protocols.Embeddings {
		c.client = providers.ClientOf(c.proto)
	}
	if m := gjson.GetBytes(body, "model"); m.Type == gjson.String {
		// The request model is what the client asked for; options may
		// replace it upstream (the upstream model is in the log's "model").
		c.clientModel, c.requestModel = m.Str, m.Str
	}
	if c.conf.LogPayloads {
		c.reqBody = body
	}
	return body, reserved, true
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
	var body []byte
	var err error
	if r.ContentLength > 0 {
		// nginx sends the length: one exact allocation, no ReadAll growth.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	}
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

// byteBudget bounds the request bytes all calls hold at once.
type byteBudget struct {
	limit int64
	used  atomic.Int64
}

func (b *byteBudget) take(n int64) bool {
	if b.limit <= 0 {
		return true
	}
	if b.used.Add(n) > b.limit && n < b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *byteBudget) give(n int64) {
	if b.limit > 0 {
		b.used.Add(-n)
	}
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

// outcome is how one attempt ended. Unless written, nothing reached the
// client yet: the caller may answer with it or try another instance.
type outcome struct {
	written bool
	refused *refusal    // the budgets did not admit the attempt
	status  int         // the upstream's answer status; 0 when none came
	header  http.Header // the answer's headers (rate limits)
	body    *bytes.Buffer
	err     error  // the upstream call failed
	limit   string // the conf limit that fired, if any
}

// free returns a held answer's buffer.
func (o *outcome) free() {
	putBuffer(o.body)
	o.body = nil
}

// errInvalidAnswer is an upstream answer the relay cannot hand over.
type errInvalidAnswer struct{ msg string }

func (e errInvalidAnswer) Error() string { return e.msg }

// forward makes one upstream call and fills o with how it ended. o is the
// caller's: results passed by pointer keep this frame, which every open
// stream holds, small.
func (p *Plugin) forward(w http.ResponseWriter, r *http.Request, c *call, out *providers.Outbound, o *outcome) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	dl := &deadline{cancel: cancel}
	defer dl.stop()
	firstByte := dl.after(c.conf.Timeout, "timeout")
	if c.stream && c.conf.MaxStreamTime > 0 {
		dl.after(c.conf.MaxStreamTime, "max_stream_duration_ms")
	}
	c.upstreamHost = hostOf(out.URL)
	if len(out.Parts) > 0 {
		p.fanOut(ctx, w, r, c, dl, out, o)
		return
	}

	sent := time.Now()
	resp, err := p.send(ctx, r, c, out.URL, out.Body)
	if err != nil {
		o.err, o.limit = err, dl.which()
		return
	}
	defer resp.Body.Close()
	o.header = resp.Header
	// The relay asks for no encoding (it reads answers); one it did not ask
	// for cannot be read or relayed as it claims to be.
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		dl.stop()
		o.err = badEncoding(c, ce)
		return
	}
	if c.stream && out.Convert == nil && resp.StatusCode/100 == 2 {
		switch {
		case out.EventStream && isAWSEventStream(resp.Header):
			p.streamFrames(w, r, c, dl, firstByte, resp, sent, o, true)
			return
		case isEventStream(resp.Header) && c.reader != nil:
			p.streamFrames(w, r, c, dl, firstByte, resp, sent, o, false)
			return
		case isEventStream(resp.Header):
			p.stream(w, r, c, dl, firstByte, resp, sent, o)
			return
		}
	}
	c.ttft = time.Since(sent)
	p.whole(w, c, dl, resp, out.Convert, o)
}

// whole reads an answer whole; a success is written, an error held in o
// for the caller to answer with or to move on from.
//
//go:noinline
func (p *Plugin) whole(w http.ResponseWriter, c *call, dl *deadline, resp *http.Response, convert func([][]byte) ([]byte, error), o *outcome) {
	buf, err := p.readWhole(resp, c.conf)
	if err != nil {
		o.err, o.limit = err, dl.which()
		return
	}
	dl.stop()
	o.status = resp.StatusCode
	if resp.StatusCode/100 != 2 {
		o.body = buf
		return
	}
	defer putBuffer(buf)
	p.writeWhole(w, c, resp.StatusCode, resp.Header, [][]byte{buf.Bytes()}, convert)
	o.written = true
}

// The helpers below keep cold paths' temporaries (a parsed URL, fmt's
// arguments) out of the frames a stream holds for its whole life: every
// open stream's goroutine stack is sized by its deepest frame chain.

//go:noinline
func hostOf(target string) string {
	if u, err := url.Parse(target); err == nil {
		return u.Host
	}
	return ""
}

//go:noinline
func badEncoding(c *call, ce string) error {
	return errInvalidAnswer{fmt.Sprintf("%s answered with Content-Encoding %.32q, which the relay did not ask for", c.provider, ce)}
}

// errAuth marks a failure to obtain upstream credentials (a token fetch).
type errAuth struct{ err error }

func (e errAuth) Error() string { return "could not obtain upstream credentials: " + e.err.Error() }
func (e errAuth) Unwrap() error { return e.err }

// errTooLarge is an upstream answer over the relay's limit.
type errTooLarge struct{ limit int64 }

func (e errTooLarge) Error() string { return fmt.Sprintf("answer exceeds %d bytes", e.limit) }

// send makes one upstream call with the client's headers (less the ones a
// provider must not see) and the route's credentials.
func (p *Plugin) send(ctx context.Context, r *http.Request, c *call, target string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	copyHeaders(req.Header, r.Header, dropRequest)
	if c.upProto != protocols.Messages {
		// Anthropic's API version and betas mean nothing to another
		// protocol, and a server that knows them could misread them.
		req.Header.Del("Anthropic-Version")
		req.Header.Del("Anthropic-Beta")
	}
	req.Header.Set("Content-Type", "application/json")
	if err := c.inst.Provider.Authorize(ctx, req); err != nil {
		return nil, errAuth{err}
	}
	// RoundTrip, not a Client: a proxy relays redirects, it does not follow them.
	return p.transports.forConf(c.conf).RoundTrip(req)
}

// readWhole reads an answer the relay must hold whole, within the route's
// max_response_bytes (or bufferedResponseCap). The buffer comes from a pool;
// hand it back with putBuffer once the answer is written.
func (p *Plugin) readWhole(resp *http.Response, conf *Conf) (*bytes.Buffer, error) {
	limit := conf.MaxResponseBytes
	if limit == 0 {
		limit = bufferedResponseCap
	}
	if resp.ContentLength > limit {
		return nil, errTooLarge{limit}
	}
	buf := buffers.Get().(*bytes.Buffer)
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(buf.Len()) > limit {
		err = errTooLarge{limit}
	}
	if err != nil {
		putBuffer(buf)
		return nil, err
	}
	return buf, nil
}

// buffers hold whole answers between reading and writing them; reusing them
// saves allocating and zeroing every answer's size again.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuffer(b *bytes.Buffer) {
	if b == nil || b.Cap() > 4<<20 {
		return // let rare giants go
	}
	b.Reset()
	buffers.Put(b)
}

// fanOut sends every part as its own call, in parallel, and answers with
// the converted whole, or with the first error answer as the provider gave it.
func (p *Plugin) fanOut(ctx context.Context, w http.ResponseWriter, r *http.Request, c *call, dl *deadline, out *providers.Outbound, o *outcome) {
	type answer struct {
		status int
		header http.Header
		body   *bytes.Buffer
		err    error
	}
	answers := make([]answer, len(out.Parts))
	sem := make(chan struct{}, maxParallelParts)
	var wg sync.WaitGroup
	sent := time.Now()
	for i, part := range out.Parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp, err := p.send(ctx, r, c, out.URL, part)
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			answers[i].status, answers[i].header = resp.StatusCode, resp.Header
			answers[i].body, answers[i].err = p.readWhole(resp, c.conf)
		}()
	}
	wg.Wait()
	held := -1 // the answer handed to the caller keeps its buffer
	defer func() {
		for i, a := range answers {
			if i != held {
				putBuffer(a.body)
			}
		}
	}()
	c.ttft = time.Since(sent)
	limit := dl.which()
	dl.stop()
	bodies := make([][]byte, len(answers))
	for i, a := range answers {
		if a.err != nil {
			*o = outcome{header: a.header, err: a.err, limit: limit}
			return
		}
		if a.status/100 != 2 {
			held = i
			*o = outcome{status: a.status, header: a.header, body: a.body}
			return
		}
		bodies[i] = a.body.Bytes()
	}
	p.writeWhole(w, c, answers[0].status, answers[0].header, bodies, out.Convert)
	*o = outcome{written: true, status: answers[0].status, header: answers[0].header}
}

// maxParallelParts bounds the calls one fanned-out request makes at once.
const maxParallelParts = 8

func isEventStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/event-stream"
}

func isAWSEventStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/vnd.amazon.eventstream"
}

// failUpstream answers a call whose upstream request failed before any byte
// reached the client: 504 when a limit passed, 499 when the client left,
// 502 otherwise.
func (p *Plugin) failUpstream(w http.ResponseWriter, r *http.Request, c *call, limit string, err error) {
	var authErr errAuth
	var tooLarge errTooLarge
	var invalid errInvalidAnswer
	switch {
	case errors.As(err, &invalid):
		c.fail(w, http.StatusBadGateway, "upstream_invalid_response", invalid.msg)
	case errors.As(err, &authErr):
		c.fail(w, http.StatusBadGateway, "upstream_auth_failed", authErr.Error())
	case errors.As(err, &tooLarge):
		c.fail(w, http.StatusBadGateway, "upstream_response_too_large", c.provider+" "+tooLarge.Error())
	case limit != "":
		c.fail(w, http.StatusGatewayTimeout, "upstream_timeout", fmt.Sprintf("%s gave no answer within %s (%s)", c.provider, limitValue(c.conf, limit), limit))
	case r.Context().Err() != nil:
		c.status, c.errKind, c.errMsg = 499, "client_closed", "client closed the request"
	default:
		c.fail(w, http.StatusBadGateway, "upstream_unavailable", fmt.Sprintf("%s request failed: %s", c.provider, describeNetErr(err)))
	}
}

func limitValue(conf *Conf, limit string) time.Duration {
	switch limit {
	case "max_stream_duration_ms":
		return conf.MaxStreamTime
	case "stream_idle_timeout_ms":
		return conf.StreamIdle
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

// writeWhole answers with a response read whole: every non-stream answer
// and every error. Holding it first lets the usage go into the headers.
func (p *Plugin) writeWhole(w http.ResponseWriter, c *call, status int, header http.Header, bodies [][]byte, convert func([][]byte) ([]byte, error)) {
	ok := status/100 == 2
	body := bodies[0]
	if ok && convert != nil {
		var err error
		if body, err = convert(bodies); err != nil {
			c.fail(w, http.StatusBadGateway, "upstream_invalid_response", fmt.Sprintf("%s answer could not be converted: %v", c.provider, err))
			return
		}
	}
	if ok && !gjson.ValidBytes(body) {
		// An LLM API answers JSON; anything else is a broken provider or a
		// captive portal, not an answer to hand over as 200.
		c.fail(w, http.StatusBadGateway, "upstream_invalid_response", c.provider+" answered "+strconv.Itoa(status)+" with a body that is not JSON")
		return
	}
	translated := false
	switch {
	case ok && c.reader != nil:
		var err error
		if body, err = p.readAnswer(c, body); err != nil {
			c.fail(w, http.StatusBadGateway, "upstream_invalid_response", err.Error())
			return
		}
		translated = c.writer != nil
	case ok:
		c.obs.Observe(body)
	case c.writer != nil:
		body, translated = translateError(c, status, body), true
	}
	h := w.Header()
	copyHeaders(h, header, dropResponse)
	setLLMHeaders(h, c, ok)
	if convert != nil && ok || translated {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.status = status
	if !ok {
		c.errKind = "upstream_status"
	}
	if c.conf.LogPayloads {
		c.respBody = body
	}
	w.WriteHeader(status)
	n, _ := w.Write(body)
	c.bytesOut = int64(n)
}

// readAnswer reads a whole answer in the provider's protocol: the model and
// usage, and the client's translation when it speaks another.
//
//go:noinline
func (p *Plugin) readAnswer(c *call, body []byte) ([]byte, error) {
	resp, err := c.reader.DecodeResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%s answer could not be read as %s: %v", c.provider, c.upProto, err)
	}
	var u *protocols.Usage
	if resp.UsageSeen {
		u = &resp.Usage
	}
	c.obs.ObserveHub(resp.Model, u)
	if c.writer == nil {
		return body, nil
	}
	if resp.Model == "" {
		resp.Model = c.model()
	}
	out, err := c.writer.EncodeResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("%s answer could not be translated into %s: %v", c.provider, c.proto, err)
	}
	return out, nil
}

// translateError puts a provider's error answer into the client's
// protocol, keeping the provider's status and message.
//
//go:noinline
func translateError(c *call, status int, body []byte) []byte {
	msg := c.reader.ErrorMessage(body)
	if msg == "" {
		msg = fmt.Sprintf("%s answered %d", c.provider, status)
	}
	return c.writer.EncodeError(status, "", msg)
}

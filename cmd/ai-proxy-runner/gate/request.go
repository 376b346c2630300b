package gate

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/api7/ext-plugin-proto/go/A6"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
)

// errLost ends a connection whose ExtraInfo round trip failed: what APISIX
// sends next on it is unknown.
var errLost = errors.New("ext-plugin connection lost during an ExtraInfo round trip")

// request is an HTTPReqCall as the library's pkg/http.Request. It reads the
// call's flatbuffer only for what a filter asks, and remembers changes
// rather than copying every header first: the filters of this runner set
// one or two headers, and building a map of all the client's headers for
// that was most of the library's work per call.
type request struct {
	r    *hrc.Req
	conn *frameConn
	lost bool // an ExtraInfo round trip failed

	path    []byte
	hdr     *header
	args    url.Values
	rawArgs url.Values
	vars    map[string][]byte
	body    []byte
	bodyOK  bool
	respHdr http.Header
}

var _ pkgHTTP.Request = (*request)(nil)

func (q *request) ID() uint32 { return q.r.Id() }

func (q *request) SrcIP() net.IP { return net.IP(slices.Clone(q.r.SrcIpBytes())) }

func (q *request) Method() string { return q.r.Method().String() }

func (q *request) Path() []byte {
	if q.path != nil {
		return q.path
	}
	return q.r.Path()
}

func (q *request) SetPath(p []byte) { q.path = slices.Clone(p) }

func (q *request) Header() pkgHTTP.Header {
	if q.hdr == nil {
		q.hdr = &header{r: q.r}
	}
	return q.hdr
}

func (q *request) Args() url.Values {
	if q.args == nil {
		q.args = url.Values{}
		var te A6.TextEntry
		for i := range q.r.ArgsLength() {
			if q.r.Args(&te, i) {
				q.args.Add(string(te.Name()), string(te.Value()))
			}
		}
		q.rawArgs = url.Values{}
		for k, v := range q.args {
			q.rawArgs[k] = slices.Clone(v)
		}
	}
	return q.args
}

func (q *request) Var(name string) ([]byte, error) {
	if v, ok := q.vars[name]; ok {
		return v, nil
	}
	b := flatbuffers.NewBuilder(64)
	n := b.CreateString(name)
	ei.VarStart(b)
	ei.VarAddName(b, n)
	v, err := q.ask(b, ei.InfoVar, ei.VarEnd(b))
	if err != nil {
		return nil, err
	}
	if q.vars == nil {
		q.vars = map[string][]byte{}
	}
	q.vars[name] = v
	return v, nil
}

func (q *request) Body() ([]byte, error) {
	if q.bodyOK {
		return q.body, nil
	}
	b := flatbuffers.NewBuilder(32)
	ei.ReqBodyStart(b)
	v, err := q.ask(b, ei.InfoReqBody, ei.ReqBodyEnd(b))
	if err != nil {
		return nil, err
	}
	q.body, q.bodyOK = v, true
	return v, nil
}

// Context is never cancelled: a filter's work is over before the answer
// is sent, and the library's 56 s timer per call bought nothing.
func (q *request) Context() context.Context { return context.Background() }

func (q *request) RespHeader() http.Header {
	if q.respHdr == nil {
		q.respHdr = http.Header{}
	}
	return q.respHdr
}

// ask is one ExtraInfo round trip. Its answer is read into a buffer of its
// own: the connection's read buffer still holds the call's flatbuffer.
func (q *request) ask(b *flatbuffers.Builder, kind ei.Info, info flatbuffers.UOffsetT) ([]byte, error) {
	if q.lost {
		return nil, errLost
	}
	ei.ReqStart(b)
	ei.ReqAddInfoType(b, kind)
	ei.ReqAddInfo(b, info)
	b.Finish(ei.ReqEnd(b))
	if err := q.conn.write(rpcExtraInfo, b.FinishedBytes()); err != nil {
		q.lost = true
		return nil, errLost
	}
	ty, reply, err := q.conn.readOwn()
	if err != nil || ty != rpcExtraInfo {
		q.lost = true
		return nil, errLost
	}
	var res []byte
	if !safely(func() { res = ei.GetRootAsResp(reply, 0).ResultBytes() }) {
		q.lost = true
		return nil, errLost
	}
	return res, nil
}

func (q *request) changed() bool {
	return q.path != nil || q.hdr.changed() || q.argsChanged() || len(q.respHdr) > 0
}

func (q *request) argsChanged() bool {
	return q.args != nil && !maps.EqualFunc(q.args, q.rawArgs, slices.Equal)
}

// build writes the Rewrite action.
func (q *request) build(b *flatbuffers.Builder, id uint32) {
	var path, hdrs, args, resp flatbuffers.UOffsetT
	if q.path != nil {
		path = b.CreateByteString(q.path)
	}
	if q.hdr.changed() {
		hdrs = entries(b, hrc.RewriteStartHeadersVector, q.hdr.changes())
	}
	if q.argsChanged() {
		var list []entry
		for name := range q.rawArgs {
			if _, ok := q.args[name]; !ok {
				list = append(list, entry{name: name, del: true})
			}
		}
		for name, vs := range q.args {
			if raw, ok := q.rawArgs[name]; !ok || !slices.Equal(raw, vs) {
				for _, v := range vs {
					list = append(list, entry{name: name, value: v})
				}
			}
		}
		args = entries(b, hrc.RewriteStartArgsVector, list)
	}
	if list := headerEntries(q.respHdr); len(list) > 0 {
		resp = entries(b, hrc.RewriteStartRespHeadersVector, list)
	}
	hrc.RewriteStart(b)
	if path != 0 {
		hrc.RewriteAddPath(b, path)
	}
	if hdrs != 0 {
		hrc.RewriteAddHeaders(b, hdrs)
	}
	if args != 0 {
		hrc.RewriteAddArgs(b, args)
	}
	if resp != 0 {
		hrc.RewriteAddRespHeaders(b, resp)
	}
	finishCall(b, id, hrc.ActionRewrite, hrc.RewriteEnd(b))
}

// finishCall ends HTTPReqCall's answer with its action.
func finishCall(b *flatbuffers.Builder, id uint32, kind hrc.Action, action flatbuffers.UOffsetT) {
	hrc.RespStart(b)
	hrc.RespAddId(b, id)
	hrc.RespAddActionType(b, kind)
	hrc.RespAddAction(b, action)
	b.Finish(hrc.RespEnd(b))
}

// entry is a header or argument to set, or (del) to remove: APISIX removes
// a name that comes without a value.
type entry struct {
	name, value string
	del         bool
}

func entries(b *flatbuffers.Builder, start func(*flatbuffers.Builder, int) flatbuffers.UOffsetT, list []entry) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, len(list))
	for i, e := range list {
		name := b.CreateString(e.name)
		var value flatbuffers.UOffsetT
		if !e.del {
			value = b.CreateString(e.value)
		}
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, name)
		if !e.del {
			A6.TextEntryAddValue(b, value)
		}
		offs[i] = A6.TextEntryEnd(b)
	}
	start(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

// headerEntries lists every value of h, a header line each.
func headerEntries(h http.Header) []entry {
	var list []entry
	for name, vs := range h {
		for _, v := range vs {
			list = append(list, entry{name: name, value: v})
		}
	}
	return list
}

// header is the request's headers as pkg/http.Header. Set and Del are kept
// as changes over the call's headers; View builds the whole map once and
// from then on the changes are what differs from the call's headers, as
// the library computes them.
type header struct {
	r    *hrc.Req
	set  []entry // canonical names; the last one for a name wins
	view http.Header
	raw  http.Header // the call's headers, once view exists
}

var _ pkgHTTP.Header = (*header)(nil)

func (h *header) Set(key, value string) {
	if h.view != nil {
		h.view.Set(key, value)
		return
	}
	h.set = append(h.set, entry{name: textproto.CanonicalMIMEHeaderKey(key), value: value})
}

func (h *header) Del(key string) {
	if h.view != nil {
		h.view.Del(key)
		return
	}
	h.set = append(h.set, entry{name: textproto.CanonicalMIMEHeaderKey(key), del: true})
}

func (h *header) Get(key string) string {
	if h.view != nil {
		return h.view.Get(key)
	}
	name := textproto.CanonicalMIMEHeaderKey(key)
	for i := len(h.set) - 1; i >= 0; i-- {
		if h.set[i].name == name {
			return h.set[i].value
		}
	}
	var te A6.TextEntry
	for i := range h.r.HeadersLength() {
		if h.r.Headers(&te, i) && strings.EqualFold(string(te.Name()), key) {
			return string(te.Value())
		}
	}
	return ""
}

func (h *header) View() http.Header {
	if h.view == nil {
		h.raw = http.Header{}
		var te A6.TextEntry
		for i := range h.r.HeadersLength() {
			if h.r.Headers(&te, i) {
				h.raw.Add(string(te.Name()), string(te.Value()))
			}
		}
		h.view = h.raw.Clone()
		for _, e := range h.set {
			if e.del {
				h.view.Del(e.name)
			} else {
				h.view.Set(e.name, e.value)
			}
		}
		h.set = nil
	}
	return h.view
}

func (h *header) changed() bool {
	switch {
	case h == nil:
		return false
	case h.view == nil:
		return len(h.set) > 0
	}
	return len(h.changes()) > 0
}

// changes lists what APISIX must set or remove.
func (h *header) changes() []entry {
	if h.view == nil {
		// Last change per name, in the order names were first changed; a
		// filter changes a header or two, so a scan beats a map.
		out := h.set[:0:0]
	next:
		for _, e := range h.set {
			for i := range out {
				if out[i].name == e.name {
					out[i] = e
					continue next
				}
			}
			out = append(out, e)
		}
		return out
	}
	var out []entry
	for name := range h.raw {
		if _, ok := h.view[name]; !ok {
			out = append(out, entry{name: name, del: true})
		}
	}
	for name, vs := range h.view {
		if raw, ok := h.raw[name]; len(vs) > 0 && (!ok || raw[0] != vs[0]) {
			out = append(out, entry{name: name, value: vs[0]})
		}
	}
	return out
}

// stopWriter is the http.ResponseWriter a filter answers the client with
// (the Stop action).
type stopWriter struct {
	hdr    http.Header
	body   []byte
	status int
	wrote  bool
}

func (w *stopWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}

func (w *stopWriter) Write(p []byte) (int, error) {
	w.wrote = true
	w.body = append(w.body, p...)
	return len(p), nil
}

func (w *stopWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *stopWriter) changed() bool { return w.wrote || w.status != 0 }

func (w *stopWriter) build(b *flatbuffers.Builder, id uint32) {
	var hdrs, body flatbuffers.UOffsetT
	if list := headerEntries(w.hdr); len(list) > 0 {
		hdrs = entries(b, hrc.StopStartHeadersVector, list)
	}
	if len(w.body) > 0 {
		body = b.CreateByteVector(w.body)
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	hrc.StopStart(b)
	hrc.StopAddStatus(b, uint16(status))
	if hdrs != 0 {
		hrc.StopAddHeaders(b, hdrs)
	}
	if body != 0 {
		hrc.StopAddBody(b, body)
	}
	finishCall(b, id, hrc.ActionStop, hrc.StopEnd(b))
}

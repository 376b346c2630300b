package gate

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/api7/ext-plugin-proto/go/A6"
	aerr "github.com/api7/ext-plugin-proto/go/A6/Err"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	hresp "github.com/api7/ext-plugin-proto/go/A6/HTTPRespCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// The gate answers APISIX's RPCs itself with the plugins' own ParseConf and
// RequestFilter, as the plugin-runner library would. It used to pass every
// frame on to the library over a second unix socket; on real APISIX that
// hop (two more reads and writes, two more goroutine wake-ups per call) was
// about a tenth of the runner's CPU per request (docs/benchmarks.md, before
// and after). The plugins still implement the library's plugin.Plugin and
// see its pkg/http.Request, so they do not know who serves them.

// confs holds the prepared confs by token, and the token of each conf key
// (APISIX ≥ 2.9 sends an idempotent key: the same conf gets the same
// token back while it is cached).
type confs struct {
	ttl     time.Duration
	mu      sync.RWMutex
	byToken map[uint32]*prepared
	byKey   map[string]uint32
}

// prepared is one route's list of plugin confs, in the route's order.
type prepared struct {
	entries []confEntry
	key     string
	used    atomic.Int64 // unix seconds of the last call; unused ones expire
}

type confEntry struct {
	plugin plugin.Plugin
	conf   any
}

func newConfs(ttl time.Duration) *confs {
	return &confs{ttl: ttl, byToken: map[uint32]*prepared{}, byKey: map[string]uint32{}}
}

func (cs *confs) get(tok uint32) *prepared {
	cs.mu.RLock()
	p := cs.byToken[tok]
	cs.mu.RUnlock()
	if p != nil {
		now := time.Now().Unix()
		if p.used.Load() != now {
			p.used.Store(now)
		}
	}
	return p
}

// sweep drops confs no call used for ttl. APISIX caches a token for
// APISIX_CONF_EXPIRE_TIME and ttl is longer, so it prepares a conf again
// before this forgets it; a late call gets CONF_TOKEN_NOT_FOUND, which
// makes APISIX prepare again too.
func (cs *confs) sweep(now time.Time) {
	cutoff := now.Add(-cs.ttl).Unix()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for tok, p := range cs.byToken {
		if p.used.Load() < cutoff {
			delete(cs.byToken, tok)
			if p.key != "" && cs.byKey[p.key] == tok {
				delete(cs.byKey, p.key)
			}
		}
	}
}

// prepare answers PrepareConf with a token of this process: the random
// base and a count, so no token of an earlier runner means anything here.
func (g *Gate) prepare(payload []byte) (ty byte, reply []byte) {
	var p *prepared
	var tok uint32
	ok := safely(func() {
		req := pc.GetRootAsReq(payload, 0)
		key := string(req.Key())
		if key != "" {
			g.confs.mu.RLock()
			t, found := g.confs.byKey[key]
			if found && g.confs.byToken[t] != nil {
				tok = t
			}
			g.confs.mu.RUnlock()
			if tok != 0 {
				g.confs.get(tok)
				return
			}
		}
		p = &prepared{key: key}
		var te A6.TextEntry
		for i := range req.ConfLength() {
			if !req.Conf(&te, i) {
				continue
			}
			name := string(te.Name())
			pl := g.plugins[name]
			if pl == nil {
				g.warnf("ext-plugin conf names plugin %q, which this runner does not have: skipped", name)
				continue
			}
			// The payload is the connection's read buffer: the conf must
			// not keep pointing into it.
			conf, err := pl.ParseConf(bytes.Clone(te.Value()))
			if err != nil {
				g.warnf("plugin %s: conf not accepted: %v", name, err)
				continue
			}
			p.entries = append(p.entries, confEntry{pl, conf})
		}
	})
	if !ok {
		return rpcError, errorReply(aerr.CodeBAD_REQUEST)
	}
	if p != nil {
		tok = g.base + g.issued.Add(1)
		p.used.Store(time.Now().Unix())
		g.confs.mu.Lock()
		g.confs.byToken[tok] = p
		if p.key != "" {
			g.confs.byKey[p.key] = tok
		}
		g.confs.mu.Unlock()
	}
	b := flatbuffers.NewBuilder(32)
	pc.RespStart(b)
	pc.RespAddConfToken(b, tok)
	b.Finish(pc.RespEnd(b))
	return rpcPrepareConf, b.FinishedBytes()
}

var builders = sync.Pool{New: func() any { return flatbuffers.NewBuilder(1024) }}

// call runs the route's request filters and answers HTTPReqCall: Stop when
// a filter answered the client, Rewrite when one changed the request,
// otherwise nothing to do. ExtraInfo round trips (a filter asking for a
// variable or the body) happen on apisix on the way.
func (g *Gate) call(apisix *frameConn, payload []byte) error {
	var r *hrc.Req
	var p *prepared
	if !safely(func() {
		r = hrc.GetRootAsReq(payload, 0)
		p = g.confs.get(r.ConfToken())
	}) {
		return apisix.write(rpcError, errorReply(aerr.CodeBAD_REQUEST))
	}
	if p == nil {
		return apisix.write(rpcError, errorReply(aerr.CodeCONF_TOKEN_NOT_FOUND))
	}
	req := &request{r: r, conn: apisix}
	var w stopWriter
	var id uint32
	b := builders.Get().(*flatbuffers.Builder)
	defer func() {
		b.Reset()
		builders.Put(b)
	}()
	ok := safely(func() {
		id = r.Id()
		for _, e := range p.entries {
			e.plugin.RequestFilter(e.conf, &w, req)
			if w.changed() || req.lost {
				break
			}
		}
		switch {
		case w.changed():
			w.build(b, id)
		case req.changed():
			req.build(b, id)
		default:
			hrc.RespStart(b)
			hrc.RespAddId(b, id)
			b.Finish(hrc.RespEnd(b))
		}
	})
	if req.lost {
		return errLost // APISIX's side of the connection is in an unknown state
	}
	if !ok {
		g.warnf("a request filter failed; APISIX answers this request 503")
		return apisix.write(rpcError, errorReply(aerr.CodeSERVICE_UNAVAILABLE))
	}
	return apisix.write(rpcHTTPReqCall, b.FinishedBytes())
}

// respCall answers HTTPRespCall (ext-plugin-post-resp): none of this
// runner's plugins acts on responses, so the answer changes nothing.
func (g *Gate) respCall(apisix *frameConn, payload []byte) error {
	var id uint32
	found := false
	if !safely(func() {
		r := hresp.GetRootAsReq(payload, 0)
		id, found = r.Id(), g.confs.get(r.ConfToken()) != nil
	}) {
		return apisix.write(rpcError, errorReply(aerr.CodeBAD_REQUEST))
	}
	if !found {
		return apisix.write(rpcError, errorReply(aerr.CodeCONF_TOKEN_NOT_FOUND))
	}
	b := flatbuffers.NewBuilder(32)
	hresp.RespStart(b)
	hresp.RespAddId(b, id)
	b.Finish(hresp.RespEnd(b))
	return apisix.write(rpcHTTPRespCall, b.FinishedBytes())
}

// safely runs f and reports whether it returned: flatbuffers accessors
// panic on a malformed frame, and a plugin may panic too.
func safely(f func()) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f()
	return true
}

func errorReply(code aerr.Code) []byte {
	b := flatbuffers.NewBuilder(16)
	aerr.RespStart(b)
	aerr.RespAddCode(b, code)
	b.Finish(aerr.RespEnd(b))
	return b.FinishedBytes()
}

func (g *Gate) warnf(format string, args ...any) {
	if g.warn != nil {
		g.warn(fmt.Sprintf(format, args...))
	}
}

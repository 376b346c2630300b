package gate

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/api7/ext-plugin-proto/go/A6"
	aerr "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	hresp "github.com/api7/ext-plugin-proto/go/A6/HTTPRespCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// testPlugin's conf says what its filter does: "stop" answers the client,
// "var" asks APISIX for route_id and puts it and the client's X-In header
// into X-Out, "none" does nothing; anything else sets X-Ticket to the conf.
type testPlugin struct {
	plugin.DefaultPlugin
	name string
}

func (p testPlugin) Name() string { return p.name }

func (p testPlugin) ParseConf(in []byte) (any, error) { return string(in), nil }

func (p testPlugin) RequestFilter(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	switch conf.(string) {
	case "stop":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"bad conf"}`))
	case "var":
		v, err := r.Var("route_id")
		if err != nil {
			panic(err)
		}
		r.Header().Set("X-Out", string(v)+"/"+r.Header().Get("x-in")+"/"+string(r.Path()))
	case "none":
	default:
		r.Header().Set("x-ticket", conf.(string))
		r.Header().Del("X-Drop")
	}
}

func newTestGate(t *testing.T) (*Gate, *frameConn) {
	t.Helper()
	g, err := New([]plugin.Plugin{&testPlugin{name: "a"}, &testPlugin{name: "b"}}, 0, time.Hour, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := net.Pipe()
	go g.handle(ours, new(connState))
	t.Cleanup(func() {
		theirs.Close()
		g.Close()
	})
	_ = theirs.SetDeadline(time.Now().Add(10 * time.Second))
	return g, newFrameConn(theirs)
}

func prepareConf(key string, confs ...[2]string) []byte {
	b := flatbuffers.NewBuilder(256)
	vec := entries(b, pc.ReqStartConfVector, pairs(confs))
	k := b.CreateString(key)
	pc.ReqStart(b)
	pc.ReqAddConf(b, vec)
	pc.ReqAddKey(b, k)
	b.Finish(pc.ReqEnd(b))
	return b.FinishedBytes()
}

func pairs(list [][2]string) []entry {
	out := make([]entry, len(list))
	for i, p := range list {
		out[i] = entry{name: p[0], value: p[1]}
	}
	return out
}

func reqCall(token uint32, headers ...[2]string) []byte {
	b := flatbuffers.NewBuilder(256)
	vec := entries(b, hrc.ReqStartHeadersVector, pairs(headers))
	path := b.CreateString("/v1/chat/completions")
	hrc.ReqStart(b)
	hrc.ReqAddId(b, 7)
	hrc.ReqAddConfToken(b, token)
	hrc.ReqAddPath(b, path)
	hrc.ReqAddHeaders(b, vec)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

func roundTrip(t *testing.T, c *frameConn, ty byte, payload []byte) (byte, []byte) {
	t.Helper()
	if err := c.write(ty, payload); err != nil {
		t.Fatal(err)
	}
	rty, reply, err := c.readOwn()
	if err != nil {
		t.Fatal(err)
	}
	return rty, reply
}

func prepareFor(t *testing.T, c *frameConn, key string, confs ...[2]string) uint32 {
	t.Helper()
	ty, reply := roundTrip(t, c, rpcPrepareConf, prepareConf(key, confs...))
	if ty != rpcPrepareConf {
		t.Fatalf("PrepareConf answered type %d", ty)
	}
	return pc.GetRootAsResp(reply, 0).ConfToken()
}

func errOf(t *testing.T, c *frameConn, ty byte, payload []byte) aerr.Code {
	t.Helper()
	ty, reply := roundTrip(t, c, ty, payload)
	if ty != rpcError {
		t.Fatalf("answer type %d, want an RPC error", ty)
	}
	return aerr.GetRootAsResp(reply, 0).Code()
}

func textEntries(n int, at func(*A6.TextEntry, int) bool) map[string]string {
	out := map[string]string{}
	var te A6.TextEntry
	for i := range n {
		if at(&te, i) {
			v := string(te.Value())
			if te.Value() == nil {
				v = "<deleted>"
			}
			out[string(te.Name())] = v
		}
	}
	return out
}

// Only tokens this process issued are served; an earlier runner's small
// numbers, or numbers not issued yet, make APISIX prepare the conf again.
func TestTokensOfThisProcessOnly(t *testing.T) {
	g, c := newTestGate(t)
	tok := prepareFor(t, c, "route-1#1", [2]string{"a", "t1"})
	if tok <= g.base {
		t.Fatalf("token %d not above the base %d", tok, g.base)
	}
	if again := prepareFor(t, c, "route-1#1", [2]string{"a", "t1"}); again != tok {
		t.Fatalf("the same conf key got token %d, then %d", tok, again)
	}
	if other := prepareFor(t, c, "route-2#1", [2]string{"a", "t2"}); other == tok {
		t.Fatal("another conf key got the same token")
	}
	for _, bad := range []uint32{1, 2, g.base, tok + 2, tok - g.base, ^uint32(0)} {
		if code := errOf(t, c, rpcHTTPReqCall, reqCall(bad)); code != aerr.CodeCONF_TOKEN_NOT_FOUND {
			t.Errorf("token %d: code %v", bad, code)
		}
		if code := errOf(t, c, rpcHTTPRespCall, respCall(bad)); code != aerr.CodeCONF_TOKEN_NOT_FOUND {
			t.Errorf("post-resp, token %d: code %v", bad, code)
		}
	}
	ty, reply := roundTrip(t, c, rpcHTTPRespCall, respCall(tok))
	if ty != rpcHTTPRespCall || hresp.GetRootAsResp(reply, 0).Id() != 9 {
		t.Fatalf("post-resp call with a known token: type %d", ty)
	}
}

func respCall(token uint32) []byte {
	b := flatbuffers.NewBuilder(64)
	hresp.ReqStart(b)
	hresp.ReqAddId(b, 9)
	hresp.ReqAddConfToken(b, token)
	b.Finish(hresp.ReqEnd(b))
	return b.FinishedBytes()
}

func TestRewriteCarriesOnlyTheChanges(t *testing.T) {
	_, c := newTestGate(t)
	tok := prepareFor(t, c, "k", [2]string{"unknown-plugin", "x"}, [2]string{"a", "ticket-1"}, [2]string{"b", "none"})
	ty, reply := roundTrip(t, c, rpcHTTPReqCall, reqCall(tok, [2]string{"host", "example.com"}, [2]string{"x-drop", "1"}, [2]string{"authorization", "Bearer secret"}))
	if ty != rpcHTTPReqCall {
		t.Fatalf("answer type %d", ty)
	}
	resp := hrc.GetRootAsResp(reply, 0)
	if resp.Id() != 7 || resp.ActionType() != hrc.ActionRewrite {
		t.Fatalf("id %d, action %v", resp.Id(), resp.ActionType())
	}
	var tbl flatbuffers.Table
	resp.Action(&tbl)
	var rw hrc.Rewrite
	rw.Init(tbl.Bytes, tbl.Pos)
	got := textEntries(rw.HeadersLength(), rw.Headers)
	want := map[string]string{"X-Ticket": "ticket-1", "X-Drop": "<deleted>"}
	if len(got) != len(want) || got["X-Ticket"] != want["X-Ticket"] || got["X-Drop"] != want["X-Drop"] {
		t.Fatalf("rewrite headers %v, want %v (nothing the client sent, unchanged)", got, want)
	}
	if rw.Path() != nil || rw.ArgsLength() != 0 || rw.RespHeadersLength() != 0 {
		t.Fatal("rewrite carries more than the headers")
	}
}

func TestStopEndsTheChain(t *testing.T) {
	_, c := newTestGate(t)
	tok := prepareFor(t, c, "k", [2]string{"a", "stop"}, [2]string{"b", "never-run"})
	ty, reply := roundTrip(t, c, rpcHTTPReqCall, reqCall(tok))
	if ty != rpcHTTPReqCall {
		t.Fatalf("answer type %d", ty)
	}
	resp := hrc.GetRootAsResp(reply, 0)
	if resp.ActionType() != hrc.ActionStop {
		t.Fatalf("action %v", resp.ActionType())
	}
	var tbl flatbuffers.Table
	resp.Action(&tbl)
	var stop hrc.Stop
	stop.Init(tbl.Bytes, tbl.Pos)
	hdrs := textEntries(stop.HeadersLength(), stop.Headers)
	if stop.Status() != 400 || string(stop.BodyBytes()) != `{"error":"bad conf"}` || hdrs["Content-Type"] != "application/json" || len(hdrs) != 1 {
		t.Fatalf("stop %d %q %v", stop.Status(), stop.BodyBytes(), hdrs)
	}
}

// A filter asking for a variable reads the call's own data afterwards: the
// ExtraInfo answer must not land in the buffer the call is decoded from.
func TestExtraInfoRoundTrip(t *testing.T) {
	_, c := newTestGate(t)
	tok := prepareFor(t, c, "k", [2]string{"a", "var"})
	if err := c.write(rpcHTTPReqCall, reqCall(tok, [2]string{"x-in", "from-client"})); err != nil {
		t.Fatal(err)
	}
	ty, ask, err := c.readOwn()
	if err != nil || ty != rpcExtraInfo {
		t.Fatalf("want an ExtraInfo question, got type %d, %v", ty, err)
	}
	q := ei.GetRootAsReq(ask, 0)
	var tbl flatbuffers.Table
	q.Info(&tbl)
	var v ei.Var
	v.Init(tbl.Bytes, tbl.Pos)
	if q.InfoType() != ei.InfoVar || string(v.Name()) != "route_id" {
		t.Fatalf("asked %v %q", q.InfoType(), v.Name())
	}
	// A long answer: it would overwrite the call if read into its buffer.
	answer := strings.Repeat("r", 300)
	b := flatbuffers.NewBuilder(512)
	res := b.CreateByteVector([]byte(answer))
	ei.RespStart(b)
	ei.RespAddResult(b, res)
	b.Finish(ei.RespEnd(b))
	ty, reply := roundTrip(t, c, rpcExtraInfo, b.FinishedBytes())
	if ty != rpcHTTPReqCall {
		t.Fatalf("answer type %d", ty)
	}
	resp := hrc.GetRootAsResp(reply, 0)
	resp.Action(&tbl)
	var rw hrc.Rewrite
	rw.Init(tbl.Bytes, tbl.Pos)
	got := textEntries(rw.HeadersLength(), rw.Headers)["X-Out"]
	if want := answer + "/from-client//v1/chat/completions"; got != want || resp.Id() != 7 {
		t.Fatalf("X-Out %q, want %q (id %d)", got, want, resp.Id())
	}
}

// Garbage gets BAD_REQUEST and the connection serves on.
func TestMalformedFrames(t *testing.T) {
	_, c := newTestGate(t)
	for _, ty := range []byte{rpcPrepareConf, rpcHTTPReqCall, rpcHTTPRespCall, rpcExtraInfo, 42} {
		if code := errOf(t, c, ty, []byte{1, 2, 3}); code != aerr.CodeBAD_REQUEST {
			t.Errorf("type %d: code %v", ty, code)
		}
	}
	if tok := prepareFor(t, c, "k", [2]string{"a", "x"}); tok == 0 {
		t.Fatal("no token after the garbage")
	}
}

func TestUnusedConfsExpire(t *testing.T) {
	g, c := newTestGate(t)
	tok := prepareFor(t, c, "k", [2]string{"a", "x"})
	g.confs.sweep(time.Now())
	if g.confs.get(tok) == nil {
		t.Fatal("a conf just used was dropped")
	}
	g.confs.sweep(time.Now().Add(g.confs.ttl + 2*time.Second))
	if g.confs.get(tok) != nil {
		t.Fatal("a conf unused for longer than the ttl is kept")
	}
	if code := errOf(t, c, rpcHTTPReqCall, reqCall(tok)); code != aerr.CodeCONF_TOKEN_NOT_FOUND {
		t.Fatalf("expired token: code %v", code)
	}
	if again := prepareFor(t, c, "k", [2]string{"a", "x"}); again == tok {
		t.Fatal("an expired conf's key still gives its token")
	}
}

// discardConn takes writes and drops them.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkReqCall is the gate's own work per HTTPReqCall: decode the call,
// run a filter that sets one header, build the Rewrite and write it. The
// call carries headers as APISIX sends them for a chat request.
func BenchmarkReqCall(b *testing.B) {
	g, err := New([]plugin.Plugin{&testPlugin{name: "a"}}, 0, time.Hour, func(string) {})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	_, reply := g.prepare(prepareConf("k", [2]string{"a", "ticket-0123456789abcdef0123456789abcdef"}))
	tok := pc.GetRootAsResp(reply, 0).ConfToken()
	payload := reqCall(tok,
		[2]string{"host", "127.0.0.1:9080"}, [2]string{"user-agent", "OpenAI/Python 1.54.0"},
		[2]string{"content-type", "application/json"}, [2]string{"content-length", "64"},
		[2]string{"accept", "application/json"}, [2]string{"authorization", "Bearer client-key"},
		[2]string{"x-stainless-lang", "python"}, [2]string{"accept-encoding", "gzip, deflate"})
	c := newFrameConn(discardConn{})
	b.ReportAllocs()
	for b.Loop() {
		if err := g.call(c, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// captureConn keeps what the gate writes; reads find the connection closed.
type captureConn struct {
	net.Conn
	out []byte
}

func (c *captureConn) Write(p []byte) (int, error) { c.out = append(c.out, p...); return len(p), nil }
func (c *captureConn) Read([]byte) (int, error)    { return 0, io.EOF }

// FuzzRPC sends any payload as each RPC type: the gate answers every one
// with a well-formed frame of the expected kinds and never panics.
func FuzzRPC(f *testing.F) {
	g, err := New([]plugin.Plugin{&testPlugin{name: "a"}, &testPlugin{name: "b"}}, 0, time.Hour, func(string) {})
	if err != nil {
		f.Fatal(err)
	}
	defer g.Close()
	_, reply := g.prepare(prepareConf("k", [2]string{"a", "var"}, [2]string{"b", "t"}))
	tok := pc.GetRootAsResp(reply, 0).ConfToken()
	f.Add(byte(rpcPrepareConf), prepareConf("k2", [2]string{"b", "stop"}))
	f.Add(byte(rpcHTTPReqCall), reqCall(tok, [2]string{"x-in", "v"}))
	f.Add(byte(rpcHTTPRespCall), respCall(tok))
	f.Add(byte(rpcHTTPReqCall), reqCall(1))
	f.Fuzz(func(t *testing.T, ty byte, payload []byte) {
		c := &captureConn{}
		fc := newFrameConn(c)
		var err error
		switch ty % 5 {
		case rpcPrepareConf:
			rty, _ := g.prepare(payload)
			if rty != rpcPrepareConf && rty != rpcError {
				t.Fatalf("PrepareConf answered type %d", rty)
			}
			return
		case rpcHTTPReqCall:
			err = g.call(fc, payload)
		case rpcHTTPRespCall:
			err = g.respCall(fc, payload)
		default:
			return
		}
		if err != nil {
			if err != errLost {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(c.out) < 4 {
			t.Fatal("no answer")
		}
		n := int(c.out[1])<<16 | int(c.out[2])<<8 | int(c.out[3])
		if n != len(c.out)-4 {
			t.Fatalf("frame length %d, %d bytes follow", n, len(c.out)-4)
		}
		if c.out[0] == rpcExtraInfo {
			return // a question to APISIX, whose answer the closed connection lost
		}
		if c.out[0] != ty%5 && c.out[0] != rpcError {
			t.Fatalf("answered type %d to type %d", c.out[0], ty%5)
		}
	})
}

package apisix

import (
	"errors"
	"fmt"
	"net"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	aerr "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// entry is an A6.TextEntry; a nil value is an absent one (≠ "").
type entry struct {
	name  string
	value *string
}

func strp(s string) *string { return &s }

// rpcTimeout is APISIX's send/read timeout per operation (§2).
const rpcTimeout = 60 * time.Second

// errTokenNotFound is the runner's CONF_TOKEN_NOT_FOUND (§4).
var errTokenNotFound = errors.New("conf token not found")

func textVector(b *flatbuffers.Builder, entries []entry, start func(*flatbuffers.Builder, int) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, len(entries))
	for i, e := range entries {
		name := b.CreateString(e.name)
		var val flatbuffers.UOffsetT
		if e.value != nil {
			val = b.CreateString(*e.value)
		}
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, name)
		if e.value != nil {
			A6.TextEntryAddValue(b, val)
		}
		offs[i] = A6.TextEntryEnd(b)
	}
	start(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func readEntries(n int, get func(*A6.TextEntry, int) bool) []entry {
	out := make([]entry, 0, n)
	var te A6.TextEntry
	for i := 0; i < n; i++ {
		if get(&te, i) {
			e := entry{name: string(te.Name())}
			if v := te.Value(); v != nil {
				e.value = strp(string(v))
			}
			out = append(out, e)
		}
	}
	return out
}

// prepareConf sends PrepareConf; conf == nil leaves the vector absent, as
// APISIX does for a plugin without `conf` (§4).
func prepareConf(c net.Conn, conf []entry, key string) (uint32, error) {
	b := flatbuffers.NewBuilder(256)
	var vec flatbuffers.UOffsetT
	if conf != nil {
		vec = textVector(b, conf, pc.ReqStartConfVector)
	}
	k := b.CreateString(key)
	pc.ReqStart(b)
	if conf != nil {
		pc.ReqAddConf(b, vec)
	}
	pc.ReqAddKey(b, k)
	b.Finish(pc.ReqEnd(b))
	if err := send(c, rpcPrepareConf, b.FinishedBytes()); err != nil {
		return 0, err
	}
	ty, buf, err := receive(c)
	if err != nil {
		return 0, err
	}
	if ty == rpcError {
		return 0, rpcErr(buf)
	}
	if ty != rpcPrepareConf {
		return 0, fmt.Errorf("unexpected type %d", ty)
	}
	return pc.GetRootAsResp(buf, 0).ConfToken(), nil
}

func send(c net.Conn, ty byte, payload []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(rpcTimeout))
	return writeFrame(c, ty, payload)
}

func receive(c net.Conn) (byte, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(rpcTimeout))
	return readFrame(c)
}

// rpcErr maps an RPC_ERROR payload to the message APISIX logs (§10).
func rpcErr(buf []byte) error {
	if len(buf) == 0 {
		return errors.New("empty error payload")
	}
	switch code := aerr.GetRootAsResp(buf, 0).Code(); code {
	case aerr.CodeBAD_REQUEST:
		return errors.New("bad request")
	case aerr.CodeSERVICE_UNAVAILABLE:
		return errors.New("service unavailable")
	case aerr.CodeCONF_TOKEN_NOT_FOUND:
		return errTokenNotFound
	default:
		return fmt.Errorf("unknown err %d", code)
	}
}

// reqCall is what APISIX puts into HTTPReqCall.Req (§5).
type reqCall struct {
	id      uint32
	srcIP   []byte
	method  A6.Method
	path    string
	args    []entry
	headers []entry
	token   uint32
}

// action is the runner's answer to HTTPReqCall (§7).
type action struct {
	kind hrc.Action
	// Stop
	status  int
	headers []entry
	body    []byte
	// Rewrite
	path        *string
	args        []entry
	respHeaders []entry
}

// httpReqCall runs one HTTPReqCall with its ExtraInfo loop (§6).
func httpReqCall(c net.Conn, r *reqCall, extra func(ei.Info, string) ([]byte, error)) (*action, error) {
	b := flatbuffers.NewBuilder(1024)
	path := b.CreateString(r.path)
	args := textVector(b, r.args, hrc.ReqStartArgsVector)
	hdrs := textVector(b, r.headers, hrc.ReqStartHeadersVector)
	hrc.ReqStartSrcIpVector(b, len(r.srcIP))
	for i := len(r.srcIP) - 1; i >= 0; i-- {
		b.PrependByte(r.srcIP[i])
	}
	ip := b.EndVector(len(r.srcIP))
	hrc.ReqStart(b)
	hrc.ReqAddId(b, r.id)
	hrc.ReqAddSrcIp(b, ip)
	hrc.ReqAddMethod(b, r.method)
	hrc.ReqAddPath(b, path)
	hrc.ReqAddArgs(b, args)
	hrc.ReqAddHeaders(b, hdrs)
	hrc.ReqAddConfToken(b, r.token)
	b.Finish(hrc.ReqEnd(b))
	if err := send(c, rpcHTTPReqCall, b.FinishedBytes()); err != nil {
		return nil, err
	}
	for {
		ty, buf, err := receive(c)
		if err != nil {
			return nil, err
		}
		switch ty {
		case rpcExtraInfo:
			if err := answerExtraInfo(c, buf, extra); err != nil {
				return nil, err
			}
			continue
		case rpcError:
			return nil, rpcErr(buf)
		case rpcHTTPReqCall:
			return parseAction(buf), nil
		default:
			return nil, fmt.Errorf("unexpected type %d", ty)
		}
	}
}

func answerExtraInfo(c net.Conn, buf []byte, extra func(ei.Info, string) ([]byte, error)) error {
	req := ei.GetRootAsReq(buf, 0)
	name := ""
	if req.InfoType() == ei.InfoVar {
		var tbl flatbuffers.Table
		if req.Info(&tbl) {
			var v ei.Var
			v.Init(tbl.Bytes, tbl.Pos)
			name = string(v.Name())
		}
	}
	result, err := extra(req.InfoType(), name)
	if err != nil {
		return fmt.Errorf("failed to handle RPC_EXTRA_INFO: %w", err)
	}
	b := flatbuffers.NewBuilder(len(result) + 64)
	var vec flatbuffers.UOffsetT
	if result != nil {
		vec = b.CreateByteVector(result)
	}
	ei.RespStart(b)
	if result != nil {
		ei.RespAddResult(b, vec)
	}
	b.Finish(ei.RespEnd(b))
	return send(c, rpcExtraInfo, b.FinishedBytes())
}

func parseAction(buf []byte) *action {
	resp := hrc.GetRootAsResp(buf, 0)
	a := &action{kind: resp.ActionType()}
	var tbl flatbuffers.Table
	if !resp.Action(&tbl) {
		a.kind = hrc.ActionNONE
		return a
	}
	switch a.kind {
	case hrc.ActionStop:
		var s hrc.Stop
		s.Init(tbl.Bytes, tbl.Pos)
		a.status = int(s.Status())
		a.headers = readEntries(s.HeadersLength(), s.Headers)
		a.body = s.BodyBytes()
	case hrc.ActionRewrite:
		var rw hrc.Rewrite
		rw.Init(tbl.Bytes, tbl.Pos)
		if p := rw.Path(); p != nil {
			a.path = strp(string(p))
		}
		a.headers = readEntries(rw.HeadersLength(), rw.Headers)
		a.args = readEntries(rw.ArgsLength(), rw.Args)
		a.respHeaders = readEntries(rw.RespHeadersLength(), rw.RespHeaders)
		a.body = rw.BodyBytes()
	}
	return a
}

package gate

import (
	"testing"

	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
)

func reqCall(token uint32) []byte {
	b := flatbuffers.NewBuilder(64)
	hrc.ReqStart(b)
	hrc.ReqAddId(b, 1)
	hrc.ReqAddConfToken(b, token)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

// Only tokens this process issued pass, mapped back to the library's
// numbering; an earlier runner's small numbers never do.
func TestTokenGateInward(t *testing.T) {
	g, err := New("unused", 0)
	if err != nil {
		t.Fatal(err)
	}
	g.issued.Store(3)
	for _, tc := range []struct {
		token uint32
		ok    bool
		inner uint32
	}{
		{1, false, 0},          // the previous runner's token 1
		{g.base, false, 0},     // library token 0 does not exist
		{g.base + 2, true, 2},  // issued here
		{g.base + 4, false, 0}, // not issued yet
		{g.base - 1, false, 0}, // below the base
		{^uint32(0), false, 0}, // far above
	} {
		p := reqCall(tc.token)
		ok := g.inward(rpcHTTPReqCall, p)
		if ok != tc.ok {
			t.Errorf("token %d: ok = %v", tc.token, ok)
		}
		if ok && hrc.GetRootAsReq(p, 0).ConfToken() != tc.inner {
			t.Errorf("token %d mapped to %d", tc.token, hrc.GetRootAsReq(p, 0).ConfToken())
		}
	}
	if g.inward(rpcHTTPReqCall, []byte{1, 2}) {
		t.Error("garbage accepted")
	}
}

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	aerr "github.com/api7/ext-plugin-proto/go/A6/Err"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	hresp "github.com/api7/ext-plugin-proto/go/A6/HTTPRespCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// The plugin-runner library numbers conf tokens 1, 2, 3… in every process,
// but APISIX keeps the tokens it cached from the previous runner across
// `apisix reload` (up to an hour per worker). A worker still holding route
// A's old token would reach whatever conf the new runner gave that number:
// route B's provider and key. tokenGate sits on APISIX's socket in front of
// the library: it shifts every token this process issues by a random base
// and answers CONF_TOKEN_NOT_FOUND for any token this process did not
// issue, so APISIX prepares the conf again (apisix-ext-plugin-protocol.md
// §4) instead of running another route's.

// RPC frame types (apisix/constants.lua).
const (
	rpcError        = 0
	rpcPrepareConf  = 1
	rpcHTTPReqCall  = 2
	rpcExtraInfo    = 3
	rpcHTTPRespCall = 4
)

type tokenGate struct {
	inner  string // the library's private socket
	base   uint32 // added to every token this process issues
	issued atomic.Uint32

	mu    sync.Mutex
	conns map[net.Conn]bool
	ln    net.Listener
}

func newTokenGate(inner string) (*tokenGate, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	// In [2^20, 2^31): far from any earlier runner's base, and no wrap for
	// the tokens one process can issue.
	base := 1<<20 + binary.BigEndian.Uint32(b[:])%(1<<31-1<<21)
	return &tokenGate{inner: inner, base: base, conns: map[net.Conn]bool{}}, nil
}

// serve accepts APISIX's connections until close.
func (g *tokenGate) serve(ln net.Listener) {
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !g.track(c, true) {
			c.Close()
			return
		}
		go g.handle(c)
	}
}

// close stops accepting and drops every connection: APISIX gets no new
// tickets from this runner.
func (g *tokenGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
	}
	for c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

func (g *tokenGate) track(c net.Conn, add bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		return false
	}
	if add {
		g.conns[c] = true
	} else {
		delete(g.conns, c)
	}
	return true
}

// handle relays one APISIX connection over one connection to the library.
func (g *tokenGate) handle(c net.Conn) {
	defer func() {
		g.track(c, false)
		c.Close()
	}()
	rc, err := net.Dial("unix", g.inner)
	if err != nil {
		return
	}
	defer rc.Close()
	apisix, runner := newFrameConn(c), newFrameConn(rc)
	for {
		ty, payload, err := apisix.read()
		if err != nil {
			return
		}
		switch ty {
		case rpcPrepareConf:
			if err := g.prepare(apisix, runner, payload); err != nil {
				return
			}
			continue
		case rpcHTTPReqCall, rpcHTTPRespCall:
			if !g.inward(ty, payload) {
				if apisix.write(rpcError, tokenNotFound()) != nil {
					return
				}
				continue
			}
		}
		if err := runner.write(ty, payload); err != nil {
			return
		}
		if err := relayReply(apisix, runner); err != nil {
			return
		}
	}
}

// prepare forwards PrepareConf and shifts the token in the reply.
func (g *tokenGate) prepare(apisix, runner *frameConn, payload []byte) error {
	if err := runner.write(rpcPrepareConf, payload); err != nil {
		return err
	}
	ty, reply, err := runner.read()
	if err != nil {
		return err
	}
	if ty == rpcPrepareConf {
		tok := pc.GetRootAsResp(reply, 0).ConfToken()
		for {
			old := g.issued.Load()
			if tok <= old || g.issued.CompareAndSwap(old, tok) {
				break
			}
		}
		b := flatbuffers.NewBuilder(32)
		pc.RespStart(b)
		pc.RespAddConfToken(b, tok+g.base)
		b.Finish(pc.RespEnd(b))
		reply = b.FinishedBytes()
	}
	return apisix.write(ty, reply)
}

// inward maps an APISIX token back to the library's number in place, or
// reports a token this process never issued.
func (g *tokenGate) inward(ty byte, payload []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false // a malformed call: let APISIX start over
		}
	}()
	var tok uint32
	var set func(uint32) bool
	if ty == rpcHTTPReqCall {
		r := hrc.GetRootAsReq(payload, 0)
		tok, set = r.ConfToken(), r.MutateConfToken
	} else {
		r := hresp.GetRootAsReq(payload, 0)
		tok, set = r.ConfToken(), r.MutateConfToken
	}
	inner := tok - g.base
	if tok < g.base || inner == 0 || inner > g.issued.Load() {
		return false
	}
	return set(inner)
}

// relayReply passes the library's answer back, with any ExtraInfo round
// trips (the library asks, APISIX answers) on the way.
func relayReply(apisix, runner *frameConn) error {
	for {
		ty, reply, err := runner.read()
		if err != nil {
			return err
		}
		if err := apisix.write(ty, reply); err != nil {
			return err
		}
		if ty != rpcExtraInfo {
			return nil
		}
		ty, answer, err := apisix.read()
		if err != nil {
			return err
		}
		if err := runner.write(ty, answer); err != nil {
			return err
		}
	}
}

func tokenNotFound() []byte {
	b := flatbuffers.NewBuilder(16)
	aerr.RespStart(b)
	aerr.RespAddCode(b, aerr.CodeCONF_TOKEN_NOT_FOUND)
	b.Finish(aerr.RespEnd(b))
	return b.FinishedBytes()
}

// frameConn reads and writes frames (a type byte and a 24-bit big-endian
// length) on one connection, reusing its read buffer: a frame read is valid
// until the next read. Reads go through a buffer so that a frame usually
// costs one read syscall, not one for the header and one for the payload.
type frameConn struct {
	net.Conn
	r   *bufio.Reader
	hdr [4]byte
	buf []byte
}

func newFrameConn(c net.Conn) *frameConn {
	return &frameConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
}

func (f *frameConn) read() (byte, []byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(f.hdr[1])<<16 | int(f.hdr[2])<<8 | int(f.hdr[3])
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	f.buf = f.buf[:n]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		return 0, nil, err
	}
	return f.hdr[0], f.buf, nil
}

// write sends header and payload in one writev, without copying.
func (f *frameConn) write(ty byte, payload []byte) error {
	if len(payload) >= 1<<24 {
		return errors.New("frame larger than 16 MiB")
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	hdr[0] = ty
	bufs := net.Buffers{hdr[:], payload}
	_, err := bufs.WriteTo(f.Conn)
	return err
}

// listenSocket listens on APISIX's socket path as the library would, but
// leaves the file in place on close: on reload the next runner may already
// own that path.
func listenSocket(path string) (*net.UnixListener, os.FileInfo, error) {
	if err := os.RemoveAll(path); err != nil {
		return nil, nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	ln.SetUnlinkOnClose(false)
	// APISIX workers may run as nobody (library issue #24).
	if err := os.Chmod(path, 0o766); err != nil {
		ln.Close()
		return nil, nil, err
	}
	fi, err := os.Stat(path)
	return ln, fi, err
}

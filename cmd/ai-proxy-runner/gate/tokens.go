// Package gate is the runner's side of APISIX's ext-plugin socket: the
// ext-plugin RPCs (conf tokens no other runner issued, the plugins'
// request filters), the check that only APISIX connects, and the handover
// of both the socket and the relay to the next runner on `apisix reload`.
package gate

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	aerr "github.com/api7/ext-plugin-proto/go/A6/Err"
)

// APISIX keeps the conf tokens it cached from the previous runner across
// `apisix reload` (up to an hour per worker). Had the new runner numbered
// its tokens 1, 2, 3… as the plugin-runner library does, a worker still
// holding route A's old token would reach whatever conf the new runner gave
// that number: route B's provider and key. So every token this process
// issues is shifted by a random base, and any token it did not issue gets
// CONF_TOKEN_NOT_FOUND, so APISIX prepares the conf again
// (apisix-ext-plugin-protocol.md §4) instead of running another route's.

// RPC frame types (apisix/constants.lua).
const (
	rpcError        = 0
	rpcPrepareConf  = 1
	rpcHTTPReqCall  = 2
	rpcExtraInfo    = 3
	rpcHTTPRespCall = 4
)

// Gate serves APISIX's socket (see the comment above and rpc.go).
type Gate struct {
	plugins map[string]plugin.Plugin
	confs   *confs
	warn    func(string)
	base    uint32 // added to every token this process issues
	issued  atomic.Uint32

	mu       sync.Mutex
	conns    map[net.Conn]*connState
	ln       net.Listener
	draining atomic.Bool
	// send passes an idle APISIX connection to the successor (set by
	// handOver); nil = close it instead.
	send    func(*net.UnixConn) error
	master  int          // nginx's master pid, 0 when unknown
	refused atomic.Int64 // connections refused by fromAPISIX
	stop    chan struct{}
}

// New makes the gate for plugins. master is nginx's master pid
// (MasterPID), 0 when unknown: its children, the workers, may connect
// whatever their user. expire is how long APISIX caches a conf token
// (APISIX_CONF_EXPIRE_TIME); an unused conf stays a fifth longer, as the
// library keeps it. warn gets what the runner's log should say (a conf
// naming an unknown plugin, a failed filter).
func New(plugins []plugin.Plugin, master int, expire time.Duration, warn func(string)) (*Gate, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	// In [2^20, 2^31): far from any earlier runner's base, and no wrap for
	// the tokens one process can issue.
	base := 1<<20 + binary.BigEndian.Uint32(b[:])%(1<<31-1<<21)
	g := &Gate{plugins: map[string]plugin.Plugin{}, confs: newConfs(expire * 6 / 5), warn: warn,
		base: base, master: master, conns: map[net.Conn]*connState{}, stop: make(chan struct{})}
	for _, pl := range plugins {
		if _, dup := g.plugins[pl.Name()]; dup {
			return nil, fmt.Errorf("plugin %s registered twice", pl.Name())
		}
		g.plugins[pl.Name()] = pl
	}
	go g.sweep()
	return g, nil
}

func (g *Gate) sweep() {
	t := time.NewTicker(min(time.Minute, g.confs.ttl/4))
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			g.confs.sweep(now)
		case <-g.stop:
			return
		}
	}
}

// Serve accepts APISIX's connections until close.
func (g *Gate) Serve(ln net.Listener) {
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !g.fromAPISIX(c) {
			c.Close()
			continue
		}
		st := new(connState)
		if !g.track(c, st) {
			c.Close()
			return
		}
		go g.handle(c, st)
	}
}

// fromAPISIX says whether the peer of c is APISIX: a process of this
// runner's own user (nginx's master and privileged agent, and workers when
// APISIX runs unprivileged), or a child of the nginx master (the workers,
// which run as nobody when APISIX starts as root). The socket must be
// connectable by the workers, so its mode cannot keep other local users
// out; this check does. Anyone else could get tickets for every route and
// spend their keys through the relay.
func (g *Gate) fromAPISIX(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	if int(cred.Uid) == os.Getuid() {
		return true
	}
	if _, ppid, ok := procStat(int(cred.Pid)); ok && g.master > 0 && ppid == g.master {
		return true
	}
	if g.refused.Add(1) <= 10 {
		fmt.Fprintf(os.Stderr, "ai-proxy-runner: refused a connection on APISIX's socket from pid %d (uid %d): not an APISIX process\n", cred.Pid, cred.Uid)
	}
	return false
}

// connState says whether a connection is in the middle of an RPC; the lock
// orders that against handOver's wake-up of idle readers.
type connState struct {
	mu   sync.Mutex
	busy bool
}

// Close stops accepting and drops every connection: APISIX gets no new
// tickets from this runner.
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	if g.ln != nil {
		g.ln.Close()
	}
	for c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// HandOver gives APISIX's connections to the next runner instead of
// closing them: a closed unix socket that a worker still holds in its pool
// fails that worker's next call with "broken pipe" (503). Each connection
// moves when it is idle: now if it is, else right after its current answer.
// With send nil the connections are closed instead.
func (g *Gate) HandOver(send func(*net.UnixConn) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.send = send
	g.draining.Store(true)
	if g.ln != nil {
		g.ln.Close()
	}
	for c, st := range g.conns {
		st.mu.Lock()
		if !st.busy {
			_ = c.SetReadDeadline(time.Now()) // wake its reader
		}
		st.mu.Unlock()
	}
}

// Adopt serves a connection the previous runner handed over.
func (g *Gate) Adopt(c net.Conn) {
	st := new(connState)
	if !g.track(c, st) {
		c.Close()
		return
	}
	go g.handle(c, st)
}

// leave ends this runner's part in c: handed to the successor if there is
// one and nothing of c's next frame has been read, else closed.
func (g *Gate) leave(c net.Conn, f *frameConn) (handed bool) {
	g.mu.Lock()
	send := g.send
	g.mu.Unlock()
	uc, ok := c.(*net.UnixConn)
	if send == nil || !ok || f.r.Buffered() > 0 {
		return false
	}
	_ = c.SetReadDeadline(time.Time{})
	return send(uc) == nil
}

// Idle says whether every connection is gone.
func (g *Gate) Idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns) == 0
}

// track adds (st != nil) or removes c; false once the gate is closed.
func (g *Gate) track(c net.Conn, st *connState) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		return false
	}
	if st != nil {
		g.conns[c] = st
	} else {
		delete(g.conns, c)
	}
	return true
}

// handle serves one APISIX connection.
func (g *Gate) handle(c net.Conn, st *connState) {
	defer func() {
		g.track(c, nil)
		c.Close()
	}()
	apisix := newFrameConn(c)
	for {
		st.mu.Lock()
		st.busy = false
		st.mu.Unlock()
		if g.draining.Load() && g.leave(c, apisix) {
			return
		}
		ty, payload, err := apisix.read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && apisix.partial == 0 && g.draining.Load() {
				g.leave(c, apisix)
			}
			return
		}
		st.mu.Lock()
		st.busy = true
		if g.draining.Load() {
			_ = c.SetReadDeadline(time.Time{}) // the wake-up was for idle readers
		}
		st.mu.Unlock()
		switch ty {
		case rpcPrepareConf:
			err = apisix.write(g.prepare(payload))
		case rpcHTTPReqCall:
			err = g.call(apisix, payload)
		case rpcHTTPRespCall:
			err = g.respCall(apisix, payload)
		default:
			err = apisix.write(rpcError, errorReply(aerr.CodeBAD_REQUEST))
		}
		if err != nil {
			return
		}
	}
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
	// partial counts the bytes of a frame read when read failed.
	partial int
}

func newFrameConn(c net.Conn) *frameConn {
	return &frameConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}
}

func (f *frameConn) read() (byte, []byte, error) {
	if n, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		f.partial = n
		return 0, nil, err
	}
	n := int(f.hdr[1])<<16 | int(f.hdr[2])<<8 | int(f.hdr[3])
	if cap(f.buf) < n {
		f.buf = make([]byte, n)
	}
	f.buf = f.buf[:n]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		f.partial = 4
		return 0, nil, err
	}
	return f.hdr[0], f.buf, nil
}

// readOwn reads a frame into a buffer of its own, leaving the previous
// frame's payload intact.
func (f *frameConn) readOwn() (byte, []byte, error) {
	keep := f.buf
	f.buf = nil
	ty, payload, err := f.read()
	f.buf = keep
	return ty, payload, err
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

// Listen listens on APISIX's socket path as the library would, but
// leaves the file in place on close (on reload the next runner may already
// own that path) and never leaves the path without a socket.
func Listen(path string) (*net.UnixListener, os.FileInfo, error) {
	// APISIX workers may run as nobody (library issue #24); fromAPISIX
	// keeps other users out.
	return listenUnix(path, 0o766)
}

// listenUnix binds a scratch name, sets its mode, then renames it over
// path: whoever dials path finds the old socket or this one, never none.
// The file stays when the listener closes; RemoveIfOurs removes it.
func listenUnix(path string, mode os.FileMode) (*net.UnixListener, os.FileInfo, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, nil, err
	}
	fi, err := os.Stat(path)
	return ln, fi, err
}

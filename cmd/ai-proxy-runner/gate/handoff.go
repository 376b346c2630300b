package gate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// On `apisix reload` the nginx master keeps its pid, so the new runner gets
// the same socket path, while the old one is still serving and holds the
// relay port. Binding anew would leave a gap (no socket, no relay) in which
// APISIX answers 503. Instead the runners overlap:
//
//   - the old runner offers its relay listener on <socket>.handoff; the new
//     one receives the very same listening socket (SCM_RIGHTS), so not one
//     queued connection is lost, and only then takes over the socket path;
//   - the old runner then stops accepting and drains what it accepted;
//   - a ticket belongs to the runner that minted it, so each relay forwards
//     a ticket it does not own to the other runner's private relay socket
//     (<socket dir>/ai-proxy-relay-<pid>.sock, mode 0600) while both live.
//
// A runner without a predecessor (first start, or the old one crashed)
// binds the relay address as usual.

// handoffPath is where a runner offers its relay listener to its successor.
func handoffPath(sock string) string { return sock + ".handoff" }

// PrivateRelayPath is a runner's socket for relay calls forwarded by the
// other generation.
func PrivateRelayPath(sock string) string {
	return filepath.Join(filepath.Dir(sock), fmt.Sprintf("ai-proxy-relay-%d.sock", os.Getpid()))
}

// Predecessor is the runner this one replaces, once it handed the relay
// over; Ready tells it to hand over APISIX's connections too.
type Predecessor struct {
	conn    *net.UnixConn
	Private string // its private relay socket
}

// Ready tells the predecessor that this runner serves the socket path: it
// stops accepting and hands APISIX's connections over, which adopt serves.
// Safe on a nil predecessor.
func (p *Predecessor) Ready(adopt func(net.Conn)) {
	if p == nil {
		return
	}
	_ = p.conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := p.conn.Write([]byte("ready\n")); err != nil {
		p.conn.Close()
		return
	}
	_ = p.conn.SetDeadline(time.Time{})
	go func() {
		defer p.conn.Close()
		buf := make([]byte, 64)
		oob := make([]byte, syscall.CmsgSpace(16*4))
		for {
			_, oobn, _, _, err := p.conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for i := range msgs {
				fds, _ := syscall.ParseUnixRights(&msgs[i])
				for _, fd := range fds {
					f := os.NewFile(uintptr(fd), "apisix")
					c, err := net.FileConn(f)
					f.Close()
					if err == nil {
						adopt(c)
					}
				}
			}
		}
	}()
}

// TakeOver asks a running predecessor for its relay listener. It returns
// (nil, nil, nil) when there is none.
func TakeOver(sock, ownPrivate string) (net.Listener, *Predecessor, error) {
	c, err := net.DialTimeout("unix", handoffPath(sock), time.Second)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, nil, nil // no predecessor: a fresh start
	}
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: %w", err)
	}
	uc := c.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			uc.Close()
		}
	}()
	_ = uc.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(uc, "%s\n", ownPrivate); err != nil {
		return nil, nil, fmt.Errorf("handoff: %w", err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: %w", err) // it went away mid-handoff: bind as usual
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, nil, fmt.Errorf("handoff: no listener in the predecessor's answer")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, nil, fmt.Errorf("handoff: no listener in the predecessor's answer")
	}
	f := os.NewFile(uintptr(fds[0]), "relay")
	defer f.Close() // FileListener dups it
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: %w", err)
	}
	ok = true
	_ = uc.SetDeadline(time.Time{})
	return ln, &Predecessor{conn: uc, Private: strings.TrimSpace(string(buf[:n]))}, nil
}

// Offer serves the handoff socket: a successor that connects gets the relay
// listener, and once it says it serves the socket path, onTaken runs with
// its private relay path and a function that passes one APISIX connection
// to it; the handoff connection stays open until done() is closed. A
// successor that fails before that changes nothing: this runner goes on
// serving.
type Offer struct {
	ln      *net.UnixListener
	path    string
	ours    os.FileInfo
	relay   syscall.RawConn
	private string
	onTaken func(successorPrivate string, send func(*net.UnixConn) error) (done <-chan struct{})
	once    sync.Once
}

func NewOffer(sock string, relay net.Listener, private string, onTaken func(string, func(*net.UnixConn) error) <-chan struct{}) (*Offer, error) {
	tl, ok := relay.(*net.TCPListener)
	if !ok {
		return nil, errors.New("handoff: relay is not a TCP listener")
	}
	// The raw socket, not File(): File's Fd() would switch the shared
	// socket to blocking mode under this process's own Accept.
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, err
	}
	path := handoffPath(sock)
	ln, fi, err := ListenPrivate(path)
	if err != nil {
		return nil, err
	}
	o := &Offer{ln: ln, path: path, ours: fi, relay: rc, private: private, onTaken: onTaken}
	go o.serve()
	return o, nil
}

func (o *Offer) serve() {
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			return
		}
		o.give(c)
	}
}

func (o *Offer) give(c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	var werr error
	cerr := o.relay.Control(func(fd uintptr) {
		_, _, werr = c.WriteMsgUnix([]byte(o.private+"\n"), syscall.UnixRights(int(fd)), nil)
	})
	if cerr != nil || werr != nil {
		return
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	ready, err := br.ReadString('\n')
	if err != nil || ready != "ready\n" {
		return
	}
	successor := strings.TrimSpace(line)
	_ = c.SetDeadline(time.Time{})
	var mu sync.Mutex
	send := func(conn *net.UnixConn) error {
		rc, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		var werr error
		if err := rc.Control(func(fd uintptr) {
			_, _, werr = c.WriteMsgUnix([]byte("c"), syscall.UnixRights(int(fd)), nil)
		}); err != nil {
			return err
		}
		return werr
	}
	var done <-chan struct{}
	o.once.Do(func() { done = o.onTaken(successor, send) })
	if done != nil {
		<-done
	}
}

// Close stops offering; the path is removed only if it is still ours.
func (o *Offer) Close() {
	o.ln.Close()
	RemoveIfOurs(o.path, o.ours)
}

// ListenPrivate listens on a unix socket only this user can connect to.
func ListenPrivate(path string) (*net.UnixListener, os.FileInfo, error) {
	return listenUnix(path, 0o600)
}

// RemoveIfOurs removes path unless another runner has put its own there.
func RemoveIfOurs(path string, ours os.FileInfo) {
	if now, err := os.Stat(path); err == nil && os.SameFile(ours, now) {
		_ = os.Remove(path)
	}
}

// Peers routes relay calls whose ticket another runner minted.
type Peers struct {
	mu          sync.RWMutex
	predecessor *httputil.ReverseProxy
	successor   *httputil.ReverseProxy
	// handedOver: answers close their connection, so nginx opens the next
	// one to the successor. Closing an idle keepalive connection instead
	// races with nginx reusing it: a 502.
	HandedOver atomic.Bool
}

func unixProxy(path string) *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     10 * time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "peer"
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1, // streams: every event at once
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `{"error":{"message":"the runner that issued this request's ticket did not answer","type":"ai_proxy_error","code":"runner_gone","param":null}}`)
		},
	}
}

func (p *Peers) Set(predecessor bool, path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if predecessor {
		p.predecessor = unixProxy(path)
	} else {
		p.successor = unixProxy(path)
	}
}

// pick chooses where a call this runner cannot serve goes: a runner that
// handed over forwards to its successor (new tickets on old connections);
// otherwise to the predecessor (old workers finishing their requests).
// Forwarded calls only go backwards, so nothing loops.
func (p *Peers) pick(forwarded bool) *httputil.ReverseProxy {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !forwarded && p.successor != nil {
		return p.successor
	}
	return p.predecessor
}

func (p *Peers) any() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.predecessor != nil || p.successor != nil
}

// Routing serves a relay listener: the plugin's own calls directly, others
// through the peer that minted their ticket.
func Routing(own interface {
	http.Handler
	Owns(*http.Request) bool
}, p *Peers, forwarded bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.HandedOver.Load() {
			w.Header().Set("Connection", "close")
		}
		if p.any() && !own.Owns(r) {
			if fw := p.pick(forwarded); fw != nil {
				fw.ServeHTTP(w, r)
				return
			}
		}
		own.ServeHTTP(w, r)
	})
}

// WaitHandover waits for a successor to take over, at most wait, and not
// once nginx's master (its pid is in the socket's name) has exited: that
// was `apisix stop` or `quit`, not a reload.
func WaitHandover(handedOver <-chan struct{}, sock string, wait time.Duration) {
	master := MasterPID(sock)
	if master == 0 {
		return // not started by APISIX: no successor to wait for
	}
	deadline := time.After(wait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-handedOver:
			return
		case <-deadline:
			return
		case <-tick.C:
			if !alive(master) {
				return
			}
		}
	}
}

// alive says whether pid runs; a zombie (exited, not yet reaped: PID 1 in
// a container may reap late) does not.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	state, _, ok := procStat(pid)
	return !ok || state != "Z" // no procfs: trust kill(0)
}

// procStat reads a process's state and parent from /proc/<pid>/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid …: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// MasterPID reads nginx's master pid from APISIX's socket name,
// apisix-<pid>.sock; 0 when it is named otherwise.
func MasterPID(sock string) int {
	name := filepath.Base(sock)
	num, ok := strings.CutPrefix(strings.TrimSuffix(name, ".sock"), "apisix-")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(num)
	if err != nil {
		return 0
	}
	return pid
}

// Abandon drops a predecessor whose relay this runner did not use.
func (p *Predecessor) Abandon() { p.conn.Close() }

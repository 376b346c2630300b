// Package tlsproxy is an HTTPS proxy (HTTPS_PROXY) that terminates TLS with
// its own test CA, so a process can be run against its real default
// endpoints (https://api.openai.com/..., https://us-central1-aiplatform.googleapis.com/...)
// with no internet: give it HTTPS_PROXY=p.URL() and SSL_CERT_FILE=<WriteCA
// file>. Go's http.Transport then sends `CONNECT host:443`; the proxy
// answers 200, plays the TLS server for that host with a leaf certificate
// its CA signs on the fly, and serves the decrypted HTTP/1.1 requests with a
// backend http.Handler (typically fakeprovider servers chosen by r.Host).
//
// It does not import testing; Close closes every connection, hijacked ones
// included, and leaves no goroutine behind.
package tlsproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Request is one decrypted request as the backend received it.
type Request struct {
	Connect  string // the CONNECT target of its tunnel, e.g. "api.openai.com:443"
	Method   string
	Host     string // the Host header, e.g. "api.openai.com"
	Path     string
	RawQuery string
}

// Proxy is a running proxy.
type Proxy struct {
	ca      *authority
	ln      net.Listener
	outer   *http.Server // plain HTTP: CONNECT
	inner   *http.Server // HTTP/1.1 inside the tunnels
	feed    *connListener
	backend http.Handler
	serving sync.WaitGroup // the two Serve loops

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup // Add only under mu while !closed, so Close's Wait is safe
	conns    map[*trackedConn]struct{}
	connects []string
	requests []Request
}

// quiet drops the servers' own logging: TLS handshake failures from clients
// that do not trust the CA are expected in tests, not noise to print.
var quiet = log.New(io.Discard, "", 0)

// Start listens on 127.0.0.1 and serves tunnels with backend.
func Start(backend http.Handler) (*Proxy, error) {
	ca, err := newAuthority()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ca: ca, ln: ln, backend: backend, feed: newConnListener(ln.Addr()), conns: map[*trackedConn]struct{}{}}
	p.outer = &http.Server{Handler: http.HandlerFunc(p.serveConnect), ReadHeaderTimeout: 10 * time.Second, ErrorLog: quiet}
	p.inner = &http.Server{
		Handler:  http.HandlerFunc(p.serveTunneled),
		ErrorLog: quiet,
		// An empty (non-nil) map turns HTTP/2 off: the tunnels speak
		// HTTP/1.1 only, like the ALPN list offered below.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext:  withTarget,
	}
	p.serving.Add(2)
	go func() { defer p.serving.Done(); p.outer.Serve(ln) }()
	go func() { defer p.serving.Done(); p.inner.Serve(p.feed) }()
	return p, nil
}

// URL is the proxy's address for HTTPS_PROXY: http://127.0.0.1:port.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// CAPEM is the CA certificate in PEM.
func (p *Proxy) CAPEM() []byte { return bytes.Clone(p.ca.pem) }

// WriteCA writes the CA certificate in PEM to path (for SSL_CERT_FILE).
func (p *Proxy) WriteCA(path string) error { return os.WriteFile(path, p.ca.pem, 0o644) }

// CertPool is a pool holding only the CA, for in-process clients.
func (p *Proxy) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	return pool
}

// Connects lists the CONNECT targets seen, in order.
func (p *Proxy) Connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

// Requests lists the decrypted requests passed to the backend, in order.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Close stops listening, closes every tunnel (including connections the
// backend hijacked) and waits for the handlers to return.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*trackedConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()

	p.outer.Close()
	p.inner.Close() // also closes feed, ending its Serve loop
	// The servers forget hijacked connections; closing the raw TCP
	// connections under every tunnel ends whatever still reads them, and
	// cancels the request contexts of backend handlers still running.
	for _, c := range conns {
		c.Close()
	}
	p.handlers.Wait()
	p.serving.Wait()
}

// enter registers a running handler unless the proxy is closed.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.handlers.Add(1)
	return true
}

// serveConnect opens a tunnel for CONNECT and refuses everything else:
// this proxy exists to see the HTTPS traffic, not to forward plain HTTP.
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		http.Error(w, "tlsproxy: only CONNECT is supported", http.StatusMethodNotAllowed)
		return
	}
	if !p.enter() {
		http.Error(w, "tlsproxy: closed", http.StatusServiceUnavailable)
		return
	}
	defer p.handlers.Done()
	target := r.Host
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		http.Error(w, "tlsproxy: CONNECT target must be host:port", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.connects = append(p.connects, target)
	p.mu.Unlock()

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	// After Hijack the ResponseWriter is unusable: answer by hand.
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	raw := net.Conn(conn)
	if n := brw.Reader.Buffered(); n > 0 {
		// A client that sent its ClientHello without waiting for our 200.
		early, _ := brw.Reader.Peek(n)
		raw = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)}
	}
	tc := p.track(raw, target)
	if tc == nil {
		conn.Close()
		return
	}
	tlsConn := tls.Server(tc, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" { // clients omit SNI for IP addresses
				name = host
			}
			return p.ca.leaf(name)
		},
	})
	if !p.feed.push(tlsConn) {
		tlsConn.Close()
	}
}

// serveTunneled records a decrypted request and hands it to the backend.
func (p *Proxy) serveTunneled(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		http.Error(w, "tlsproxy: closed", http.StatusServiceUnavailable)
		return
	}
	defer p.handlers.Done()
	target, _ := r.Context().Value(targetKey{}).(string)
	p.mu.Lock()
	p.requests = append(p.requests, Request{Connect: target, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery})
	p.mu.Unlock()
	p.backend.ServeHTTP(w, r)
}

// track registers a tunnel's raw connection so Close can reach it; nil
// once the proxy is closed.
func (p *Proxy) track(c net.Conn, target string) *trackedConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	tc := &trackedConn{Conn: c, target: target, p: p}
	p.conns[tc] = struct{}{}
	return tc
}

// trackedConn is a tunnel's raw connection; closing it unregisters it.
type trackedConn struct {
	net.Conn
	target string
	p      *Proxy
	once   sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}

// targetKey carries a tunnel's CONNECT target into its requests' contexts.
type targetKey struct{}

func withTarget(ctx context.Context, c net.Conn) context.Context {
	if tlsConn, ok := c.(*tls.Conn); ok {
		if tc, ok := tlsConn.NetConn().(*trackedConn); ok {
			return context.WithValue(ctx, targetKey{}, tc.target)
		}
	}
	return ctx
}

// prefixConn replays bytes read ahead by the CONNECT parser.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// connListener is a net.Listener fed with the tunnels' TLS connections, so
// one http.Server serves them all.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false once the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// Package httpsproxy is an HTTPS_PROXY for tests: it accepts CONNECT,
// terminates TLS with certificates from its own test CA and hands the
// decrypted requests to a handler, so code that calls the providers' real
// https:// hosts can be tested offline with SSL_CERT_FILE set to the CA.
package httpsproxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Proxy is a running proxy.
type Proxy struct {
	ln      net.Listener
	backend http.Handler
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	inner   *http.Server
	conns   chan net.Conn
	quit    chan struct{}

	mu       sync.Mutex
	connects []string
	open     map[net.Conn]bool
	certs    map[string]*tls.Certificate
	wg       sync.WaitGroup
}

// Start listens on 127.0.0.1 and serves decrypted requests with backend.
func Start(backend http.Handler) (*Proxy, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ai-proxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(der)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, backend: backend, ca: ca, caKey: caKey, conns: make(chan net.Conn), quit: make(chan struct{}),
		open: map[net.Conn]bool{}, certs: map[string]*tls.Certificate{}}
	p.inner = &http.Server{Handler: backend, ReadHeaderTimeout: 10 * time.Second}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.inner.Serve(chanListener{p}) }()
	go func() { defer p.wg.Done(); p.accept() }()
	return p, nil
}

// URL is the value for HTTPS_PROXY.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// WriteCA writes the CA certificate (PEM) for SSL_CERT_FILE.
func (p *Proxy) WriteCA(path string) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}), 0o644)
}

// Connects lists the CONNECT targets seen ("api.openai.com:443").
func (p *Proxy) Connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

// Close stops the proxy and drops every connection.
func (p *Proxy) Close() {
	close(p.quit)
	p.ln.Close()
	p.inner.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.open[c] = true
	} else {
		delete(p.open, c)
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handshake(c)
		}()
	}
}

// handshake reads the CONNECT, answers 200 and hands the TLS side of the
// tunnel to the inner server.
func (p *Proxy) handshake(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		c.Write([]byte("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		c.Close()
		p.track(c, false)
		return
	}
	p.mu.Lock()
	p.connects = append(p.connects, req.Host)
	p.mu.Unlock()
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		c.Close()
		p.track(c, false)
		return
	}
	tc := tls.Server(&bufferedConn{Conn: c, r: br}, &tls.Config{
		GetCertificate: p.cert,
		NextProtos:     []string{"http/1.1"},
	})
	select {
	case p.conns <- &trackedConn{Conn: tc, done: func() { p.track(c, false) }}:
	case <-p.quit:
		c.Close()
		p.track(c, false)
	}
}

// cert issues (and caches) a leaf for the SNI host.
func (p *Proxy) cert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.certs[hello.ServerName]; ok {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: hello.ServerName},
		DNSNames: []string{hello.ServerName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, p.ca.Raw}, PrivateKey: key}
	p.certs[hello.ServerName] = c
	return c, nil
}

// chanListener feeds tunnelled TLS connections to the inner http.Server.
type chanListener struct{ p *Proxy }

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.p.conns:
		return c, nil
	case <-l.p.quit:
		return nil, net.ErrClosed
	}
}

func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.p.ln.Addr() }

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (t *trackedConn) Close() error {
	t.once.Do(t.done)
	return t.Conn.Close()
}

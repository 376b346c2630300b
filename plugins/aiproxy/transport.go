package aiproxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// transportKey is what distinguishes one connection pool from another.
// Routes with the same settings share a pool; a new pool per conf token
// would leak idle connections on every route edit.
type transportKey struct {
	keepalive        bool
	keepaliveTimeout time.Duration
	keepalivePool    int
	sslVerify        bool
}

type transports struct {
	mu    sync.Mutex
	pools map[transportKey]*http.Transport
}

func newTransports() *transports {
	return &transports{pools: map[transportKey]*http.Transport{}}
}

func (t *transports) forConf(c *Conf) *http.Transport {
	k := transportKey{c.Keepalive, c.KeepaliveTimeout, c.KeepalivePool, c.SSLVerify}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.pools[k]; ok {
		return tr
	}
	tr := &http.Transport{
		// HTTPS_PROXY/NO_PROXY as every Go client; the trust store follows
		// SSL_CERT_FILE/SSL_CERT_DIR through crypto/x509.
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          k.keepalivePool * 4,
		MaxIdleConnsPerHost:   k.keepalivePool,
		IdleConnTimeout:       k.keepaliveTimeout,
		DisableKeepAlives:     !k.keepalive,
		// The relay reads usage from answers, so it must get them
		// uncompressed; Go asks for identity when it adds no Accept-Encoding.
		DisableCompression: true,
	}
	if !k.sslVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the route asked for ssl_verify: false
	}
	t.pools[k] = tr
	return tr
}

// closeIdle drops idle upstream connections (at shutdown).
func (t *transports) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.pools {
		tr.CloseIdleConnections()
	}
}

package apisix

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure the double the way config.yaml configures APISIX.
type Options struct {
	RunnerCmd    []string // ext-plugin.cmd; nil = dev mode: dial SocketPath, spawn nothing
	SocketPath   string   // default: a temp dir's apisix-<pid>.sock
	Env          []string // variables declared in nginx_config.envs ("K=V")
	RunnerOutput io.Writer
	Logf         func(format string, args ...any)
	Workers      int           // nginx workers, default 2
	StopTimeout  time.Duration // SIGTERM → SIGKILL, default 1s as APISIX
	// ReloadSpawnDelay: on reload the next runner starts this long after
	// the old one got SIGTERM (measured on APISIX 3.18: 0.3-1 s).
	ReloadSpawnDelay time.Duration
	RespawnDelay     time.Duration // default 3s as APISIX; negative = never
	SocketWait       time.Duration // default 10s
	// AccessLog, when set, receives each access-log entry instead of the
	// double keeping them for AccessLog() (a long load would pile them up).
	AccessLog func(AccessEntry)
}

// Stats count what the double sent.
type Stats struct {
	PrepareConf, HTTPReqCall, ExtraInfo, Dials, TokenRetries int64
}

// AccessEntry is one line of APISIX's access log.
type AccessEntry struct {
	Time                 time.Time
	RouteID              string
	Method, URI          string
	RemoteAddr           string // host:port
	RequestID            string // nginx's $request_id
	RequestTime          time.Duration
	Status               int
	UpstreamAddr         string
	UpstreamStatus       int
	UpstreamHeader       http.Header // $upstream_http_*
	UpstreamHeaderTime   time.Duration
	UpstreamResponseTime time.Duration
	BytesSent            int64
	ExtPluginError       string
	ExtPluginTime        time.Duration // the ext-plugin RPCs, retries included
}

// Gateway is one APISIX instance.
type Gateway struct {
	opts Options
	sock string

	mu        sync.RWMutex
	routes    map[string]*route
	upstreams map[string]*upstream
	versions  map[string]int

	workers  []*worker
	next     atomic.Uint32 // round-robin over workers: requests alternate
	nextNode atomic.Uint32 // round-robin over upstream nodes
	shared   tokenDict
	prepare  sync.Mutex // the global "prepare_conf" lock (§4)
	runner   *runnerProc
	runnerMu sync.Mutex
	closing  atomic.Bool

	prepareCount, reqCallCount, extraCount, dials, retries atomic.Int64

	logMu  sync.Mutex
	access []AccessEntry

	transport *http.Transport
}

// Start brings up the double: spawns the runner (unless dev mode) and waits
// until its socket accepts connections.
func Start(opts Options) (*Gateway, error) {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = time.Second
	}
	if opts.ReloadSpawnDelay == 0 {
		opts.ReloadSpawnDelay = 300 * time.Millisecond
	}
	if opts.RespawnDelay == 0 {
		opts.RespawnDelay = 3 * time.Second
	}
	if opts.SocketWait <= 0 {
		opts.SocketWait = 10 * time.Second
	}
	if opts.RunnerOutput == nil {
		opts.RunnerOutput = io.Discard
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	sock := opts.SocketPath
	if sock == "" {
		dir, err := os.MkdirTemp("", "apisix-double")
		if err != nil {
			return nil, err
		}
		sock = filepath.Join(dir, fmt.Sprintf("apisix-%d.sock", os.Getpid()))
	}
	sock, _ = filepath.Abs(sock)
	g := &Gateway{
		opts: opts, sock: sock,
		routes: map[string]*route{}, upstreams: map[string]*upstream{}, versions: map[string]int{},
		shared: tokenDict{m: map[string]tokenItem{}},
		transport: &http.Transport{
			Proxy:       nil, // nginx never uses environment proxies
			DialContext: (&net.Dialer{Timeout: 60 * time.Second}).DialContext,
			// APISIX keeps 320 idle upstream connections per worker
			// (nginx_config.http.upstream.keepalive); a smaller pool would
			// close and re-dial connections under bursts, which real APISIX
			// does not.
			MaxIdleConnsPerHost: 320 * opts.Workers,
			DisableCompression:  true,
		},
	}
	for i := range opts.Workers {
		g.workers = append(g.workers, &worker{id: i, lru: map[string]tokenItem{}})
	}
	if opts.RunnerCmd != nil {
		if err := g.StartRunner(); err != nil {
			return nil, err
		}
	} else if err := g.waitSocket(); err != nil {
		return nil, err
	}
	return g, nil
}

// Stats reports the double's counters.
func (g *Gateway) Stats() Stats {
	return Stats{g.prepareCount.Load(), g.reqCallCount.Load(), g.extraCount.Load(), g.dials.Load(), g.retries.Load()}
}

// AccessLog returns the access log so far.
func (g *Gateway) AccessLog() []AccessEntry {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return append([]AccessEntry(nil), g.access...)
}

func (g *Gateway) logAccess(e AccessEntry) {
	if g.opts.AccessLog != nil {
		g.opts.AccessLog(e)
		return
	}
	g.logMu.Lock()
	g.access = append(g.access, e)
	g.logMu.Unlock()
}

// Close stops the runner and drops every connection.
func (g *Gateway) Close() error {
	g.closing.Store(true)
	err := g.StopRunner()
	for _, w := range g.workers {
		w.closeIdle()
	}
	g.transport.CloseIdleConnections()
	return err
}

// worker is one nginx worker: its token LRU and its socket pool.
type worker struct {
	id      int
	counter atomic.Uint32
	mu      sync.Mutex
	idle    []net.Conn
	lru     map[string]tokenItem
}

const (
	poolSize    = 32
	lruSize     = 8
	lruTTL      = 3600 * time.Second
	sharedTTL   = 3240 * time.Second // 3600 × 0.9 (§4)
	dialTimeout = time.Second
)

// conn takes a pooled connection or dials a new one (§2).
func (g *Gateway) conn(w *worker) (net.Conn, error) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		c := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		return c, nil
	}
	w.mu.Unlock()
	g.dials.Add(1)
	c, err := net.DialTimeout("unix", g.sock, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to the unix socket unix:%s: %w", g.sock, err)
	}
	return c, nil
}

func (w *worker) put(c net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.idle) >= poolSize {
		c.Close()
		return
	}
	w.idle = append(w.idle, c)
}

func (w *worker) closeIdle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.idle {
		c.Close()
	}
	w.idle = nil
}

type tokenItem struct {
	token   uint32
	expires time.Time
}

// tokenDict is the "ext-plugin" shared dict.
type tokenDict struct {
	mu sync.Mutex
	m  map[string]tokenItem
}

func (d *tokenDict) get(key string) (uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	it, ok := d.m[key]
	if !ok || time.Now().After(it.expires) {
		return 0, false
	}
	return it.token, true
}

func (d *tokenDict) set(key string, tok uint32) {
	d.mu.Lock()
	d.m[key] = tokenItem{tok, time.Now().Add(sharedTTL)}
	d.mu.Unlock()
}

func (d *tokenDict) flush() {
	d.mu.Lock()
	d.m = map[string]tokenItem{}
	d.mu.Unlock()
}

func (w *worker) lruGet(key string) (uint32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	it, ok := w.lru[key]
	if !ok || time.Now().After(it.expires) {
		return 0, false
	}
	return it.token, true
}

func (w *worker) lruSet(key string, tok uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lru) >= lruSize {
		var oldest string
		for k, it := range w.lru {
			if oldest == "" || it.expires.Before(w.lru[oldest].expires) {
				oldest = k
			}
		}
		delete(w.lru, oldest)
	}
	w.lru[key] = tokenItem{tok, time.Now().Add(lruTTL)}
}

func (w *worker) lruFlush() {
	w.mu.Lock()
	w.lru = map[string]tokenItem{}
	w.mu.Unlock()
}

// flushTokens is what every worker does on the runner_exit event (§1).
func (g *Gateway) flushTokens() {
	g.shared.flush()
	for _, w := range g.workers {
		w.lruFlush()
	}
}

// token finds the conf token for a plugin instance: worker LRU, shared dict,
// then PrepareConf under the global lock on a second connection (§4).
func (g *Gateway) token(w *worker, key string, conf []entry) (uint32, error) {
	if tok, ok := w.lruGet(key); ok {
		return tok, nil
	}
	if tok, ok := g.shared.get(key); ok {
		w.lruSet(key, tok)
		return tok, nil
	}
	g.prepare.Lock()
	defer g.prepare.Unlock()
	if tok, ok := g.shared.get(key); ok {
		w.lruSet(key, tok)
		return tok, nil
	}
	c, err := g.conn(w)
	if err != nil {
		return 0, err
	}
	g.prepareCount.Add(1)
	tok, err := prepareConf(c, conf, key)
	if err != nil {
		c.Close()
		return 0, fmt.Errorf("failed to receive RPC_PREPARE_CONF: %w", err)
	}
	w.put(c)
	g.shared.set(key, tok)
	w.lruSet(key, tok)
	return tok, nil
}

func (g *Gateway) pickWorker() *worker {
	return g.workers[int(g.next.Add(1))%len(g.workers)]
}

func (g *Gateway) waitSocket() error {
	deadline := time.Now().Add(g.opts.SocketWait)
	for {
		c, err := net.DialTimeout("unix", g.sock, dialTimeout)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runner socket %s not ready after %s: %w", g.sock, g.opts.SocketWait, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errStopped = errors.New("runner stopped")

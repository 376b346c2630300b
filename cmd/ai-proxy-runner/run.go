package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ai-proxy-runner/ai-proxy-runner/cmd/ai-proxy-runner/gate"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxymulti"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/airatelimiting"
)

const defaultRelayAddr = "127.0.0.1:9881"

func run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	relayAddr := fs.String("relay-addr", envOr("AI_PROXY_RELAY_ADDR", defaultRelayAddr), "address of the relay that APISIX's ai-proxy upstream points at (env AI_PROXY_RELAY_ADDR)")
	levelName := fs.String("log-level", envOr("AI_PROXY_LOG_LEVEL", "warn"), "debug, info, warn or error (env AI_PROXY_LOG_LEVEL); info logs every call")
	accessLog := fs.String("access-log", envOr("AI_PROXY_ACCESS_LOG", ""), "file for one JSON line per LLM call (env AI_PROXY_ACCESS_LOG); empty = stdout; reopened on SIGHUP")
	metricsAddr := fs.String("metrics-addr", envOr("AI_PROXY_METRICS_ADDR", ""), "address for GET /metrics (Prometheus) (env AI_PROXY_METRICS_ADDR); empty = off; keep it private")
	pprofAddr := fs.String("pprof-addr", envOr("AI_PROXY_PPROF_ADDR", ""), "loopback address for /debug/pprof/ (profiles) (env AI_PROXY_PPROF_ADDR); empty = off")
	idleTimeout := fs.Duration("relay-idle-timeout", 2*time.Minute, "how long an idle APISIX connection to the relay stays open; keep it above APISIX's upstream keepalive (60 s)")
	bodyBudget := fs.Int64("max-body-bytes-in-flight", 256<<20, "request bytes all calls may hold at once; beyond, 503 runner_busy (0 = unbounded)")
	memLimit := fs.Int64("memory-limit", 1<<30, "soft memory limit of the Go runtime in bytes (GOMEMLIMIT wins when set; 0 = none)")
	maxProcs := fs.Int("max-procs", 0, "cores the runner's Go code may run on at once (GOMAXPROCS wins when set); 0 = half of those this process may use, at least 1")
	bindWait := fs.Duration("relay-bind-wait", 5*time.Second, "how long to retry a relay address still held by a previous runner that did not hand it over")
	reloadWait := fs.Duration("reload-wait", 5*time.Second, "on SIGTERM while nginx runs on (apisix reload, or APISIX respawning a killed runner), how long to serve on until the next runner takes over")
	foreground := fs.Bool("foreground", false, "serve in this process instead of a child that outlives APISIX's SIGKILL of the process it started")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGTERM, how long in-flight calls may run on (APISIX kills the process it started 1s after SIGTERM; the supervised child runs on)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*foreground && os.Getenv(childEnv) == "" {
		return supervise(append([]string{"run"}, args...))
	}
	shareCores(*maxProcs)
	if *memLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(*memLimit)
	}
	if err := serve(settings{*relayAddr, *levelName, *accessLog, *metricsAddr, *pprofAddr, *bodyBudget, *grace, *bindWait, *reloadWait, *idleTimeout}); err != nil {
		fmt.Fprintln(os.Stderr, "ai-proxy-runner:", err)
		return 1
	}
	return 0
}

// shareCores sets how many goroutines run at once, unless GOMAXPROCS does.
// APISIX's workers (one per core) spend about as much CPU per request as
// the runner, so the runner takes half of the cores by default. Fewer Ps
// also cost less: with a P per core, Go wakes an idle thread for nearly
// every goroutine that becomes ready (an RPC answer, a read on the relay),
// and at a sidecar's loads that wake-up is a quarter of the runner's CPU
// per request (docs/benchmarks.md, real APISIX, before and after).
func shareCores(n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n <= 0 {
		n = max(1, runtime.GOMAXPROCS(0)/2)
	}
	runtime.GOMAXPROCS(n)
}

type settings struct {
	relayAddr, levelName, accessLog, metricsAddr, pprofAddr string
	bodyBudget                                              int64
	grace, bindWait, reloadWait, idleTimeout                time.Duration
}

func serve(s settings) error {
	relayAddr, grace := s.relayAddr, s.grace
	level, err := zapcore.ParseLevel(s.levelName)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	sock, err := socketPath()
	if err != nil {
		return err
	}
	expire, err := confExpireTime()
	if err != nil {
		return err
	}
	// Writes to a closed pipe return an error instead of killing the
	// process (Go's default for stdout and stderr).
	signal.Ignore(syscall.SIGPIPE)
	stdout := &apisixPipe{w: os.Stdout}
	log := newLogger(level, stdout)
	defer func() { _ = log.Sync() }()
	// The call log is buffered and flushed every second, as APISIX buffers
	// its own access log: one write per call would be a syscall per call.
	var callOut zapcore.WriteSyncer = stdout
	if s.accessLog != "" {
		f, err := openLogFile(s.accessLog)
		if err != nil {
			return fmt.Errorf("--access-log: %w", err)
		}
		defer f.Close()
		callOut = f
	}
	buffered := &zapcore.BufferedWriteSyncer{WS: callOut, Size: 256 << 10, FlushInterval: time.Second}
	defer func() { _ = buffered.Stop() }()
	calls := newLogger(zapcore.InfoLevel, buffered)
	if lf, ok := callOut.(*logFile); ok {
		stopHUP := reopenOnHUP(lf, buffered, log)
		defer stopHUP()
	}

	// On `apisix reload` the previous runner hands its relay listener over
	// (package gate); otherwise bind the address.
	private := gate.PrivateRelayPath(sock)
	ln, pred, err := gate.TakeOver(sock, private)
	if err != nil {
		log.Warn("no relay handoff from the previous runner; binding the address", zap.Error(err))
	}
	if ln != nil && !sameAddr(ln.Addr(), relayAddr) {
		log.Warn("the previous runner's relay listens elsewhere; binding the address", zap.String("previous", ln.Addr().String()))
		ln.Close()
		pred.Abandon()
		ln, pred = nil, nil
	}
	if ln == nil {
		ln, err = listenRetry(relayAddr, s.bindWait)
		if err != nil {
			return fmt.Errorf("relay cannot listen on %s: %w", relayAddr, err)
		}
	} else {
		log.Info("took over the relay listener from the previous runner", zap.String("relay_addr", ln.Addr().String()))
	}
	if !isLoopback(ln.Addr()) {
		log.Warn("THE RELAY LISTENS BEYOND LOOPBACK: only APISIX should reach it; firewall it or use --relay-addr 127.0.0.1:<port>", zap.String("relay_addr", ln.Addr().String()))
	}
	if err := checkSocket(sock); err != nil {
		ln.Close()
		return err
	}

	opts := aiproxy.Options{Log: log, Calls: calls, MaxBodyBytesInFlight: s.bodyBudget}
	if s.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts.Metrics = aiproxy.NewMetrics(reg)
		stop, err := serveMetrics(s.metricsAddr, reg, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	}
	if s.pprofAddr != "" {
		stop, err := servePprof(s.pprofAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
	}
	p := aiproxy.New(opts)
	peer := &gate.Peers{}
	if pred != nil {
		peer.Set(true, pred.Private)
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			// nginx sends a request whole (it buffers the body first).
			ReadTimeout: time.Minute,
			// Above APISIX's upstream keepalive (60 s idle), so nginx closes
			// idle connections first; nothing else keeps one open forever.
			IdleTimeout: s.idleTimeout,
			ErrorLog:    zap.NewStdLog(log.Named("relay")),
		}
	}
	srv := newServer(gate.Routing(p, peer, false))
	var relayConns atomic.Int64 // APISIX's connections to the relay
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			relayConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			relayConns.Add(-1)
		}
	}
	privSrv := newServer(gate.Routing(p, peer, true))
	privLn, privFI, err := gate.ListenPrivate(private)
	if err != nil {
		ln.Close()
		return fmt.Errorf("cannot listen on %s: %w", private, err)
	}
	defer gate.RemoveIfOurs(private, privFI)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	go func() { _ = privSrv.Serve(privLn) }()
	log.Info("relay listening", zap.String("relay_addr", ln.Addr().String()), zap.String("socket", sock))

	// SIGTERM (APISIX stopping or reloading) or SIGINT ends the serving.
	// They stay caught until the process exits: a second SIGTERM (APISIX
	// and the supervisor may both send one) must not kill the calls that
	// are finishing.
	stopped := make(chan os.Signal, 1)
	signal.Notify(stopped, syscall.SIGINT, syscall.SIGTERM)
	tg, err := gate.New([]plugin.Plugin{p, aiproxymulti.New(p), airatelimiting.New(p)}, gate.MasterPID(sock), expire, func(msg string) { log.Warn(msg) })
	if err != nil {
		ln.Close()
		return err
	}
	gateLn, ours, err := gate.Listen(sock)
	if err != nil {
		return fmt.Errorf("cannot listen on socket %s: %w", sock, err)
	}
	go tg.Serve(gateLn)
	pred.Ready(tg.Adopt)

	// Offer the relay to the runner of the next reload. Once it took it,
	// stop accepting: it accepts from the same socket.
	handedOver := make(chan struct{})
	connsMoved := make(chan struct{})
	offered, err := gate.NewOffer(sock, ln, private, func(successor string, send func(*net.UnixConn) error) <-chan struct{} {
		peer.Set(false, successor)
		peer.HandedOver.Store(true)
		ln.Close()
		tg.HandOver(send)
		close(handedOver)
		return connsMoved
	})
	if err != nil {
		log.Warn("cannot offer the relay to a successor; reloads will rebind it", zap.Error(err))
	}
	<-stopped
	// APISIX no longer reads our output (it may still serve us on reload).
	stdout.detach()
	if offered != nil {
		// On `apisix reload` APISIX starts the successor 0.3-1 s after
		// this runner's SIGTERM: serve on until it took over, unless nginx
		// itself is going away.
		gate.WaitHandover(handedOver, sock, s.reloadWait)
		offered.Close()
	}
	if closed(handedOver) {
		// Connections busy with an RPC move to the successor once it is
		// answered; idle ones have moved already.
		deadline := time.Now().Add(grace)
		for !tg.Idle() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(connsMoved)
	}
	// No new tickets from here on. Remove the socket only if it is still
	// ours: on reload the next runner put its own there.
	tg.Close()
	gate.RemoveIfOurs(sock, ours)

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if closed(handedOver) {
		// nginx closes each keepalive connection once an answer says so;
		// wait for that rather than close idle ones under its feet.
		for relayConns.Load() > 0 && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Shutdown refuses new connections at once and waits for in-flight
	// calls, streams included, up to the grace period.
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("calls still running after the grace period were cut", zap.Duration("grace", grace))
		srv.Close()
	}
	// The successor forwards calls with this runner's tickets until those
	// stop coming (APISIX's old workers finish theirs) or APISIX kills us.
	if closed(handedOver) {
		time.Sleep(min(grace, 750*time.Millisecond))
	}
	if err := privSrv.Shutdown(ctx); err != nil {
		privSrv.Close()
	}
	p.Close()
	err = <-served
	if closed(handedOver) {
		return nil // the listener was closed on purpose
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// closed says whether ch has been closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sameAddr says whether a listener's address is the configured one.
func sameAddr(a net.Addr, want string) bool {
	w, err := net.ResolveTCPAddr("tcp", want)
	ta, ok := a.(*net.TCPAddr)
	return err == nil && ok && ta.Port == w.Port && (w.IP == nil || w.IP.Equal(ta.IP))
}

// listenRetry binds addr, retrying while it is in use for up to wait: on
// `apisix reload` the previous runner may still be finishing its calls.
func listenRetry(addr string, wait time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(wait)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newLogger(level zapcore.Level, out zapcore.WriteSyncer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), out, level))
}

// reopenOnHUP reopens the call log on SIGHUP (after logrotate moved it).
func reopenOnHUP(f *logFile, pending zapcore.WriteSyncer, log *zap.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				_ = pending.Sync() // lines logged before the rotation go to the old file
				if err := f.Reopen(); err != nil {
					log.Error("cannot reopen the access log", zap.Error(err))
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}

// serveMetrics serves GET /metrics on its own listener, apart from the
// relay, so scraping needs no ticket and the relay stays closed.
func serveMetrics(addr string, reg *prometheus.Registry, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics cannot listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named("metrics"))}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// servePprof serves Go's profiles (how docs/benchmarks.md was made) on a
// loopback listener of its own: they reveal memory, so never beyond it.
func servePprof(addr string, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof cannot listen on %s: %w", addr, err)
	}
	if !isLoopback(ln.Addr()) {
		ln.Close()
		return nil, fmt.Errorf("--pprof-addr must be a loopback address, got %s", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named("pprof"))}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// socketPath reads the socket APISIX dials, as APISIX passes it.
func socketPath() (string, error) {
	addr := os.Getenv("APISIX_LISTEN_ADDRESS")
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok || path == "" {
		return "", fmt.Errorf("APISIX_LISTEN_ADDRESS must be unix:<socket path> (APISIX sets it when it starts the runner), got %q", addr)
	}
	return path, nil
}

// confExpireTime is how long APISIX caches a conf token
// (APISIX_CONF_EXPIRE_TIME, default 3600 s).
func confExpireTime() (time.Duration, error) {
	v := os.Getenv("APISIX_CONF_EXPIRE_TIME")
	if v == "" {
		return time.Hour, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("APISIX_CONF_EXPIRE_TIME must be a positive number of seconds, got %q", v)
	}
	return time.Duration(n) * time.Second, nil
}

// checkSocket proves the socket's directory usable before anything else
// starts, so a bad path fails the start with a clear error. It listens on
// a scratch name: APISIX must not reach the real path before the gate is up.
func checkSocket(path string) error {
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("socket directory %s does not exist", filepath.Dir(path))
	}
	scratch := path + ".check"
	_ = os.Remove(scratch)
	l, err := net.Listen("unix", scratch)
	if err != nil {
		return fmt.Errorf("cannot listen on socket %s: %w", path, err)
	}
	return l.Close() // also unlinks the file
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

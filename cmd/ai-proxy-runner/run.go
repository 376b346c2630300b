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
	"strconv"
	"strings"
	"syscall"
	"time"

	runnerlog "github.com/apache/apisix-go-plugin-runner/pkg/log"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/apache/apisix-go-plugin-runner/pkg/runner"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy"
)

const defaultRelayAddr = "127.0.0.1:9881"

func run(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	relayAddr := fs.String("relay-addr", envOr("AI_PROXY_RELAY_ADDR", defaultRelayAddr), "address of the relay that APISIX's ai-proxy upstream points at (env AI_PROXY_RELAY_ADDR)")
	levelName := fs.String("log-level", envOr("AI_PROXY_LOG_LEVEL", "warn"), "debug, info, warn or error (env AI_PROXY_LOG_LEVEL); info logs every call")
	accessLog := fs.String("access-log", envOr("AI_PROXY_ACCESS_LOG", ""), "file for one JSON line per LLM call (env AI_PROXY_ACCESS_LOG); empty = stdout; reopened on SIGHUP")
	metricsAddr := fs.String("metrics-addr", envOr("AI_PROXY_METRICS_ADDR", ""), "address for GET /metrics (Prometheus) and /debug/pprof/ (env AI_PROXY_METRICS_ADDR); empty = off; keep it private")
	bindWait := fs.Duration("relay-bind-wait", 5*time.Second, "how long to retry a relay address still held by a previous runner (APISIX starts the new runner on reload while the old one drains)")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGTERM, how long in-flight calls may run on; APISIX itself kills the runner 1s after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serve(settings{*relayAddr, *levelName, *accessLog, *metricsAddr, *grace, *bindWait}); err != nil {
		fmt.Fprintln(os.Stderr, "ai-proxy-runner:", err)
		return 1
	}
	return 0
}

type settings struct {
	relayAddr, levelName, accessLog, metricsAddr string
	grace, bindWait                              time.Duration
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
	if err := checkExpireTime(); err != nil {
		return err
	}
	log := newLogger(level, zapcore.Lock(os.Stdout))
	defer func() { _ = log.Sync() }()
	// The call log is buffered and flushed every second, as APISIX buffers
	// its own access log: one write per call would be a syscall per call.
	var callOut zapcore.WriteSyncer = zapcore.Lock(os.Stdout)
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

	ln, err := listenRetry(relayAddr, s.bindWait)
	if err != nil {
		return fmt.Errorf("relay cannot listen on %s: %w", relayAddr, err)
	}
	if !isLoopback(ln.Addr()) {
		log.Warn("THE RELAY LISTENS BEYOND LOOPBACK: only APISIX should reach it; firewall it or use --relay-addr 127.0.0.1:<port>", zap.String("relay_addr", ln.Addr().String()))
	}
	if err := checkSocket(sock); err != nil {
		ln.Close()
		return err
	}

	// The plugin runner logs every RPC at info level; APISIX copies the
	// runner's output into its error.log, so keep it at the chosen level
	// from the first line.
	runnerlog.NewLogger(level, os.Stdout)
	opts := aiproxy.Options{Log: log, Calls: calls}
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
	p := aiproxy.New(opts)
	if err := plugin.RegisterPlugin(p); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("relay")),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("relay listening", zap.String("relay_addr", ln.Addr().String()), zap.String("socket", sock))

	// The plugin-runner library serves a private socket; APISIX talks to
	// the token gate on the real one (see tokens.go).
	private := sock + ".runner"
	_ = os.Remove(private)
	os.Setenv("APISIX_LISTEN_ADDRESS", "unix:"+private)
	ran := make(chan struct{})
	go func() {
		// Run serves until SIGINT or SIGTERM.
		runner.Run(runner.RunnerConfig{LogLevel: level, LogOutput: os.Stdout})
		close(ran)
	}()
	if err := waitDialable(private, 10*time.Second); err != nil {
		return fmt.Errorf("plugin runner did not listen on %s: %w", private, err)
	}
	gate, err := newTokenGate(private)
	if err != nil {
		return err
	}
	gateLn, ours, err := listenSocket(sock)
	if err != nil {
		return fmt.Errorf("cannot listen on socket %s: %w", sock, err)
	}
	go gate.serve(gateLn)
	<-ran
	// No new tickets from here on. Remove the socket only if it is still
	// ours: on reload the next runner may already have put its own there.
	gate.close()
	if now, err := os.Stat(sock); err == nil && os.SameFile(ours, now) {
		_ = os.Remove(sock)
	}

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Shutdown refuses new connections at once and waits for in-flight
	// calls, streams included, up to the grace period.
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("calls still running after the grace period were cut", zap.Duration("grace", grace))
		srv.Close()
	}
	p.Close()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
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
	// Profiles on the same private listener: how docs/benchmarks.md was made.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named("metrics"))}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// waitDialable waits until a unix socket accepts connections.
func waitDialable(sock string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
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

func checkExpireTime() error {
	v := os.Getenv("APISIX_CONF_EXPIRE_TIME")
	if v == "" {
		return nil
	}
	if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		return fmt.Errorf("APISIX_CONF_EXPIRE_TIME must be a positive number of seconds, got %q", v)
	}
	return nil
}

// checkSocket proves the socket's directory usable before the plugin
// runner, which would only exit with a log line, tries it. It listens on a
// scratch name: APISIX must not reach the real path before the gate is up.
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

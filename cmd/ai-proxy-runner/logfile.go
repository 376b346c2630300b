package main

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// apisixPipe is the runner's stdout, which APISIX's privileged agent reads
// into error.log. The agent stops reading when it sends SIGTERM and the
// pipe closes when it exits, while this runner may serve on (reload
// handover): a write could then block on the full pipe or fail. After
// detach, output is dropped instead.
type apisixPipe struct {
	w        io.Writer
	mu       sync.Mutex
	detached atomic.Bool
}

func (p *apisixPipe) Write(b []byte) (int, error) {
	if p.detached.Load() {
		return len(b), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

func (p *apisixPipe) Sync() error { return nil }

func (p *apisixPipe) detach() { p.detached.Store(true) }

// logFile is an append-only file that can be reopened in place, so the call
// log survives logrotate: rotate, then send the runner SIGHUP.
type logFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	l := &logFile{path: path}
	return l, l.Reopen()
}

func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (l *logFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

func (l *logFile) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Sync()
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

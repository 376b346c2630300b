// Package redisserver runs a real redis-server for tests: on 127.0.0.1,
// without persistence, killed when the test ends.
package redisserver

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is one running redis-server.
type Server struct {
	Port int
	Cmd  *exec.Cmd
	done chan struct{}
}

// Start runs redis-server on port (0 = a free one) and waits until it
// listens. Without redis-server on PATH the test is skipped, or fails when
// AI_PROXY_REQUIRE_REDIS is set (CI installs it: a skip would hide that the
// tests did not run).
func Start(t testing.TB, port int) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("AI_PROXY_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server is required (AI_PROXY_REQUIRE_REDIS) but not installed")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server)")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	s := &Server{Port: port, done: make(chan struct{})}
	s.Cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Stop kills the server (also a stopped one) and waits for it to exit.
func (s *Server) Stop() {
	_ = s.Cmd.Process.Signal(syscall.SIGCONT)
	_ = s.Cmd.Process.Kill()
	<-s.done
}

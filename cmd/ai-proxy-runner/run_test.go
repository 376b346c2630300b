package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The binary under test, built once per package run.
func buildRunner(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ai-proxy-runner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// Startup errors exit non-zero with one clear line on stderr.
func TestStartupErrors(t *testing.T) {
	bin := buildRunner(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	sock := filepath.Join(t.TempDir(), "r.sock")
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no socket address", nil, nil, "APISIX_LISTEN_ADDRESS must be unix:<socket path>"},
		{"socket without unix prefix", []string{"APISIX_LISTEN_ADDRESS=" + sock}, nil, "APISIX_LISTEN_ADDRESS must be unix:<socket path>"},
		{"socket directory missing", []string{"APISIX_LISTEN_ADDRESS=unix:/nonexistent/dir/r.sock"}, []string{"--relay-addr", "127.0.0.1:0"}, "socket directory /nonexistent/dir does not exist"},
		{"bad expire time", []string{"APISIX_LISTEN_ADDRESS=unix:" + sock, "APISIX_CONF_EXPIRE_TIME=soon"}, nil, "APISIX_CONF_EXPIRE_TIME must be a positive number"},
		{"relay port taken", []string{"APISIX_LISTEN_ADDRESS=unix:" + sock}, []string{"--relay-addr", busy.Addr().String(), "--relay-bind-wait", "0s"}, "relay cannot listen on " + busy.Addr().String()},
		{"bad log level", []string{"APISIX_LISTEN_ADDRESS=unix:" + sock}, []string{"--log-level", "loud"}, "--log-level"},
		{"profiles beyond loopback", []string{"APISIX_LISTEN_ADDRESS=unix:" + sock}, []string{"--relay-addr", "127.0.0.1:0", "--pprof-addr", "0.0.0.0:0"}, "--pprof-addr must be a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"run"}, tt.args...)...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tt.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0; output %s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ai-proxy-runner: ") || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("output %q, want one line containing %q", out, tt.want)
			}
		})
	}
}

func TestVersionAndUsage(t *testing.T) {
	bin := buildRunner(t)
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "ai-proxy-runner ") {
		t.Fatalf("version: %q %v", out, err)
	}
	if err := exec.Command(bin, "frobnicate").Run(); err == nil {
		t.Fatal("unknown command exited 0")
	}
}

// A relay bound beyond loopback is logged loudly at startup.
func TestRelayBeyondLoopbackWarns(t *testing.T) {
	bin := buildRunner(t)
	sock := filepath.Join(t.TempDir(), "r.sock")
	cmd := exec.Command(bin, "run", "--relay-addr", "0.0.0.0:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "APISIX_LISTEN_ADDRESS=unix:" + sock}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	warned := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "THE RELAY LISTENS BEYOND LOOPBACK") && strings.Contains(sc.Text(), `"level":"warn"`) {
				warned <- true
				return
			}
		}
		warned <- false
	}()
	select {
	case ok := <-warned:
		if !ok {
			t.Fatal("no warning about the relay's address")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no warning about the relay's address within 10s")
	}
}

func TestShareCores(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	runtime.GOMAXPROCS(8)
	shareCores(0)
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Fatalf("8 cores: GOMAXPROCS %d, want half of them, 4", got)
	}
	runtime.GOMAXPROCS(1)
	shareCores(0)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("1 core: GOMAXPROCS %d, want 1", got)
	}
	shareCores(3)
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("--max-procs 3: GOMAXPROCS %d", got)
	}
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	shareCores(0)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("GOMAXPROCS=2 set: the runner changed it to %d", got)
	}
}

package limit

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The cost of a budget check, to set beside the ext-plugin round trip: one
// reservation and its settlement, as the relay makes them per call.
func benchStore(b *testing.B, s Store) {
	ctx := context.Background()
	b.ReportAllocs()
	var i int
	for b.Loop() {
		i++
		key := Key("route", "conf", "rule:0", strconv.Itoa(i%1000))
		res, err := s.Reserve(ctx, key, time.Minute, 1<<40, 30)
		if err != nil || !res.Allowed {
			b.Fatal(err, res)
		}
		if err := s.Adjust(ctx, key, time.Minute, res.Window, -20); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBudgetLocal(b *testing.B) { benchStore(b, NewLocal(0)) }

// BenchmarkBudgetRedis needs redis-server on PATH; it runs one on a free
// port for the benchmark.
func BenchmarkBudgetRedis(b *testing.B) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	for start := time.Now(); ; {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 5*time.Second {
			b.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rs := NewRedises()
	defer rs.Close()
	benchStore(b, rs.For(RedisConf{Host: "127.0.0.1", Port: port, Timeout: time.Second, KeepalivePool: 10, KeepaliveTimeout: 10 * time.Second}))
}

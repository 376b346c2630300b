package limit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/redisserver"
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

// BenchmarkBudgetRedis runs a redis-server on a free port (skipped when
// none is installed).
func BenchmarkBudgetRedis(b *testing.B) {
	srv := redisserver.Start(b, 0)
	rs := NewRedises()
	defer rs.Close()
	benchStore(b, rs.For(RedisConf{Host: "127.0.0.1", Port: srv.Port, Timeout: time.Second, KeepalivePool: 10, KeepaliveTimeout: 10 * time.Second}))
}

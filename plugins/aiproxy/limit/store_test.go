package limit

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/redisserver"
)

// clock is an injectable time source for Local.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time           { return c.t }
func (c *clock) advance(d time.Duration)  { c.t = c.t.Add(d) }
func newClock(at time.Time) *clock        { return &clock{t: at} }
func localAt(max int, c *clock) *Local    { l := NewLocal(max); l.now = c.now; return l }
func minuteStart(minutes int64) time.Time { return time.Unix(minutes*60, 0) }

func TestLocalReserve(t *testing.T) {
	type step struct {
		n             int64
		wantAllowed   bool
		wantRemaining int64
	}
	tests := []struct {
		name  string
		limit int64
		steps []step
	}{
		{"fills exactly to the limit", 10, []step{{4, true, 6}, {6, true, 0}, {1, false, 0}}},
		{"refusal adds nothing", 10, []step{{7, true, 3}, {4, false, 3}, {3, true, 0}}},
		{"larger than the limit on an empty window", 5, []step{{6, false, 5}, {5, true, 0}}},
		{"zero always fits", 3, []step{{3, true, 0}, {0, true, 0}, {1, false, 0}}},
		{"limit of one", 1, []step{{1, true, 0}, {1, false, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(minuteStart(1_000_000).Add(15 * time.Second))
			l := localAt(0, clk)
			var window int64
			for i, s := range tt.steps {
				res, err := l.Reserve(context.Background(), "k", time.Minute, tt.limit, s.n)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if res.Allowed != s.wantAllowed || res.Remaining != s.wantRemaining {
					t.Fatalf("step %d: Reserve(%d) = allowed %v remaining %d, want %v %d",
						i, s.n, res.Allowed, res.Remaining, s.wantAllowed, s.wantRemaining)
				}
				if res.Reset != 45*time.Second {
					t.Fatalf("step %d: Reset = %v, want 45s (to the end of the minute)", i, res.Reset)
				}
				if i == 0 {
					window = res.Window
				} else if res.Window != window {
					t.Fatalf("step %d: window %d, want %d", i, res.Window, window)
				}
			}
		})
	}
}

func TestLocalWindows(t *testing.T) {
	start := minuteStart(1_000_000)
	tests := []struct {
		name      string
		at        time.Duration // offset from the window start
		wantReset time.Duration
	}{
		{"window start", 0, time.Minute},
		{"middle", 30 * time.Second, 30 * time.Second},
		{"last nanosecond", time.Minute - time.Nanosecond, time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(start.Add(tt.at))
			l := localAt(0, clk)
			ctx := context.Background()
			res, err := l.Reserve(ctx, "k", time.Minute, 10, 10)
			if err != nil || !res.Allowed || res.Reset != tt.wantReset {
				t.Fatalf("Reserve = %+v, %v; want allowed with reset %v", res, err, tt.wantReset)
			}
			if res, _ := l.Reserve(ctx, "k", time.Minute, 10, 1); res.Allowed {
				t.Fatal("a full window admitted more")
			}
			first := res.Window
			// The next window starts from zero.
			clk.t = start.Add(time.Minute)
			res, err = l.Reserve(ctx, "k", time.Minute, 10, 10)
			if err != nil || !res.Allowed || res.Remaining != 0 {
				t.Fatalf("next window: %+v, %v; want the whole limit admitted", res, err)
			}
			if res.Window != first+1 || res.Reset != time.Minute {
				t.Fatalf("next window: window %d reset %v, want %d and 1m", res.Window, res.Reset, first+1)
			}
		})
	}
}

func TestLocalKeysAreSeparate(t *testing.T) {
	clk := newClock(minuteStart(1_000_000))
	l := localAt(0, clk)
	ctx := context.Background()
	for _, key := range []string{"a", "b", Key("a"), Key("b")} {
		res, err := l.Reserve(ctx, key, time.Minute, 5, 5)
		if err != nil || !res.Allowed || res.Remaining != 0 {
			t.Fatalf("key %s: %+v, %v; want its own full budget", key, res, err)
		}
	}
}

func TestLocalAdjust(t *testing.T) {
	tests := []struct {
		name          string
		reserved      int64
		delta         int64
		windowOffset  int64 // added to the reservation's window
		wantRemaining int64 // before the probe, limit 10
	}{
		{"give back part", 8, -5, 0, 7},
		{"give back all", 8, -8, 0, 10},
		{"never below zero", 8, -100, 0, 10},
		{"charge more", 2, 5, 0, 3},
		{"charge over the limit", 8, 5, 0, 0},
		{"older window ignored", 8, -8, -1, 2},
		{"newer window ignored", 8, -8, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(minuteStart(1_000_000))
			l := localAt(0, clk)
			ctx := context.Background()
			res, err := l.Reserve(ctx, "k", time.Minute, 10, tt.reserved)
			if err != nil || !res.Allowed {
				t.Fatalf("Reserve: %+v, %v", res, err)
			}
			if err := l.Adjust(ctx, "k", time.Minute, res.Window+tt.windowOffset, tt.delta); err != nil {
				t.Fatal(err)
			}
			probe, _ := l.Reserve(ctx, "k", time.Minute, 10, 0)
			if probe.Remaining != tt.wantRemaining {
				t.Fatalf("remaining %d after Adjust(%d), want %d", probe.Remaining, tt.delta, tt.wantRemaining)
			}
		})
	}
}

func TestLocalAdjustOldWindowAfterRollover(t *testing.T) {
	clk := newClock(minuteStart(1_000_000).Add(50 * time.Second))
	l := localAt(0, clk)
	ctx := context.Background()
	old, _ := l.Reserve(ctx, "k", time.Minute, 10, 6)
	clk.advance(20 * time.Second) // into the next window
	cur, _ := l.Reserve(ctx, "k", time.Minute, 10, 4)
	if !cur.Allowed || cur.Remaining != 6 || cur.Window != old.Window+1 {
		t.Fatalf("new window: %+v", cur)
	}
	// The old call settles: its give-back must not credit the new window.
	if err := l.Adjust(ctx, "k", time.Minute, old.Window, -6); err != nil {
		t.Fatal(err)
	}
	probe, _ := l.Reserve(ctx, "k", time.Minute, 10, 0)
	if probe.Remaining != 6 {
		t.Fatalf("remaining %d, want 6: an old window's Adjust changed the current one", probe.Remaining)
	}
	// Unknown keys are ignored, not created.
	if err := l.Adjust(ctx, "nobody", time.Minute, cur.Window, 5); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.counters["nobody"]; ok {
		t.Fatal("Adjust created a counter")
	}
}

func TestLocalFull(t *testing.T) {
	ctx := context.Background()
	start := minuteStart(1_000_000)
	clk := newClock(start)
	l := localAt(2, clk)
	reserve := func(key string, w time.Duration) (Result, error) {
		return l.Reserve(ctx, key, w, 100, 1)
	}
	steps := []struct {
		at      time.Duration
		key     string
		w       time.Duration
		wantErr error
	}{
		{0, "short", 100 * time.Millisecond, nil}, // ends at +100ms
		{0, "long", time.Hour, nil},
		{50 * time.Millisecond, "third", time.Minute, ErrFull},  // sweeps (nothing ended)
		{60 * time.Millisecond, "long", time.Hour, nil},         // a known key still counts
		{500 * time.Millisecond, "third", time.Minute, ErrFull}, // "short" ended, but swept <1s ago
		{1049 * time.Millisecond, "third", time.Minute, ErrFull},
		{1050 * time.Millisecond, "third", time.Minute, nil}, // a second since the sweep: "short" goes
		{1051 * time.Millisecond, "fourth", time.Minute, ErrFull},
		// A known key's new window replaces its counter even when full.
		{2 * time.Hour, "long", time.Hour, nil},
	}
	for i, s := range steps {
		clk.t = start.Add(s.at)
		res, err := reserve(s.key, s.w)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d (%s at +%v): err %v, want %v", i, s.key, s.at, err, s.wantErr)
		}
		if err == nil && !res.Allowed {
			t.Fatalf("step %d: refused %+v", i, res)
		}
		if err != nil && res != (Result{}) {
			t.Fatalf("step %d: error with a result %+v", i, res)
		}
		if len(l.counters) > 2 {
			t.Fatalf("step %d: %d counters, max 2", i, len(l.counters))
		}
	}
}

func TestNewLocalDefaultMax(t *testing.T) {
	for _, max := range []int{0, -1} {
		if l := NewLocal(max); l.max != DefaultMaxCounters {
			t.Fatalf("NewLocal(%d).max = %d", max, l.max)
		}
	}
	if l := NewLocal(7); l.max != 7 {
		t.Fatalf("NewLocal(7).max = %d", l.max)
	}
}

func TestKey(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	base := Key("route", "hash", "rule:0", "alice")
	if !hex32.MatchString(base) {
		t.Fatalf("Key = %q, want 32 hex chars", base)
	}
	if again := Key("route", "hash", "rule:0", "alice"); again != base {
		t.Fatalf("Key not stable: %q then %q", base, again)
	}
	long := make([]byte, 1<<16)
	if k := Key(string(long)); !hex32.MatchString(k) {
		t.Fatalf("Key of a long part = %q", k)
	}
	pairs := []struct {
		name string
		a, b []string
	}{
		{"route", []string{"r1", "h", "global", ""}, []string{"r2", "h", "global", ""}},
		{"hash", []string{"r", "h1", "global", ""}, []string{"r", "h2", "global", ""}},
		{"scope", []string{"r", "h", "rule:0", "k"}, []string{"r", "h", "rule:1", "k"}},
		{"client key", []string{"r", "h", "rule:0", "alice"}, []string{"r", "h", "rule:0", "bob"}},
		{"boundary", []string{"ab", "c"}, []string{"a", "bc"}},
		{"empty part", []string{"a"}, []string{"a", ""}},
		{"no parts", []string{}, []string{""}},
		{"order", []string{"a", "b"}, []string{"b", "a"}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if Key(p.a...) == Key(p.b...) {
				t.Fatalf("Key(%q) == Key(%q)", p.a, p.b)
			}
		})
	}
}

func TestLocalConcurrent(t *testing.T) {
	l := NewLocal(0)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := l.Reserve(context.Background(), "k", time.Hour, 30, 1)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	// A window boundary between two calls would reset the counter; an hour
	// window makes that vanishingly rare, and the count would then be over.
	if n := admitted.Load(); n != 30 {
		t.Fatalf("admitted %d of 50 against a limit of 30", n)
	}
}

// redisServer starts redis-server on a free port; it is killed when the
// test ends.
func redisServer(t *testing.T) (port int, cmd *exec.Cmd) {
	t.Helper()
	s := redisserver.Start(t, 0)
	return s.Port, s.Cmd
}

func redisStore(t *testing.T, port int) *Redis {
	t.Helper()
	rs := NewRedises()
	t.Cleanup(rs.Close)
	conf := RedisConf{Host: "127.0.0.1", Port: port, Timeout: redisTestTimeout, KeepalivePool: 10, KeepaliveTimeout: 10 * time.Second}
	r := rs.For(conf)
	if rs.For(conf) != r {
		t.Fatal("Redises.For made two clients for one conf")
	}
	return r
}

// longWindow makes a window boundary during a test practically impossible.
const longWindow = 1000 * 24 * time.Hour

func TestRedisReserve(t *testing.T) {
	port, _ := redisServer(t)
	r := redisStore(t, port)
	type step struct {
		n             int64
		wantAllowed   bool
		wantRemaining int64
	}
	tests := []struct {
		name  string
		limit int64
		steps []step
	}{
		{"fills exactly to the limit", 10, []step{{4, true, 6}, {6, true, 0}, {1, false, 0}}},
		{"refusal adds nothing", 10, []step{{7, true, 3}, {4, false, 3}, {3, true, 0}}},
		{"larger than the limit on an empty window", 5, []step{{6, false, 5}, {5, true, 0}}},
		{"limit of one", 1, []step{{1, true, 0}, {1, false, 0}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			key := Key("redis-reserve", strconv.Itoa(i))
			var window int64
			for j, s := range tt.steps {
				res, err := r.Reserve(ctx, key, longWindow, tt.limit, s.n)
				if err != nil {
					t.Fatalf("step %d: %v", j, err)
				}
				if res.Allowed != s.wantAllowed || res.Remaining != s.wantRemaining {
					t.Fatalf("step %d: Reserve(%d) = allowed %v remaining %d, want %v %d",
						j, s.n, res.Allowed, res.Remaining, s.wantAllowed, s.wantRemaining)
				}
				if res.Reset <= 0 || res.Reset > longWindow {
					t.Fatalf("step %d: Reset = %v", j, res.Reset)
				}
				if j == 0 {
					window = res.Window
				} else if res.Window != window {
					t.Fatalf("step %d: window %d, want %d", j, res.Window, window)
				}
			}
			// The counter expires a minute after its window.
			ttl, err := r.client.PTTL(ctx, r.prefix+key+":"+strconv.FormatInt(window, 10)).Result()
			if err != nil || ttl <= longWindow-time.Minute || ttl > longWindow+time.Minute {
				t.Fatalf("TTL %v, %v; want about the window plus a minute", ttl, err)
			}
		})
	}
}

func TestRedisNewWindow(t *testing.T) {
	port, _ := redisServer(t)
	r := redisStore(t, port)
	ctx := context.Background()
	const w = 200 * time.Millisecond
	var first Result
	var key string
	for try := 0; ; try++ {
		// A fresh key per try: a retried try's second call has already
		// counted in the next window.
		key = Key("redis-window", strconv.Itoa(try))
		res, err := r.Reserve(ctx, key, w, 3, 3)
		if err != nil || !res.Allowed {
			t.Fatalf("Reserve: %+v, %v", res, err)
		}
		if res.Reset > w || res.Reset < 0 {
			t.Fatalf("Reset %v outside the window", res.Reset)
		}
		full, err := r.Reserve(ctx, key, w, 3, 1)
		if err != nil {
			t.Fatal(err)
		}
		if full.Window == res.Window {
			if full.Allowed {
				t.Fatal("a full window admitted more")
			}
			first = res
			break
		}
		// The window ended between the two calls: try again in a fresh one.
	}
	time.Sleep(first.Reset + 20*time.Millisecond)
	res, err := r.Reserve(ctx, key, w, 3, 3)
	if err != nil || !res.Allowed || res.Window <= first.Window {
		t.Fatalf("next window: %+v, %v; want the whole limit admitted in a later window", res, err)
	}
}

func TestRedisAdjust(t *testing.T) {
	port, _ := redisServer(t)
	r := redisStore(t, port)
	tests := []struct {
		name          string
		reserved      int64
		delta         int64
		windowOffset  int64
		wantRemaining int64
	}{
		{"give back part", 8, -5, 0, 7},
		{"give back all", 8, -8, 0, 10},
		{"never below zero", 8, -100, 0, 10},
		{"charge more", 2, 5, 0, 3},
		{"charge over the limit", 8, 5, 0, 0},
		{"older window ignored", 8, -8, -1, 2},
		{"newer window ignored", 8, -8, 1, 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			key := Key("redis-adjust", strconv.Itoa(i))
			res, err := r.Reserve(ctx, key, longWindow, 10, tt.reserved)
			if err != nil || !res.Allowed {
				t.Fatalf("Reserve: %+v, %v", res, err)
			}
			target := res.Window + tt.windowOffset
			if err := r.Adjust(ctx, key, longWindow, target, tt.delta); err != nil {
				t.Fatal(err)
			}
			probe, err := r.Reserve(ctx, key, longWindow, 10, 0)
			if err != nil || probe.Remaining != tt.wantRemaining {
				t.Fatalf("remaining %d (%v) after Adjust(%d), want %d", probe.Remaining, err, tt.delta, tt.wantRemaining)
			}
			if tt.windowOffset != 0 {
				n, err := r.client.Exists(ctx, r.prefix+key+":"+strconv.FormatInt(target, 10)).Result()
				if err != nil || n != 0 {
					t.Fatalf("Adjust of a window that does not exist created it (%d, %v)", n, err)
				}
			}
			if tt.windowOffset == 0 {
				ttl, err := r.client.PTTL(ctx, r.prefix+key+":"+strconv.FormatInt(res.Window, 10)).Result()
				if err != nil || ttl <= 0 {
					t.Fatalf("Adjust lost the counter's TTL: %v, %v", ttl, err)
				}
			}
		})
	}
}

func TestRedisConcurrent(t *testing.T) {
	port, _ := redisServer(t)
	r := redisStore(t, port)
	key := Key("redis-concurrent")
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.Reserve(context.Background(), key, longWindow, 30, 1)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n != 30 {
		t.Fatalf("admitted %d of 50 against a limit of 30", n)
	}
}

// redisDownModes stop a running redis-server: killed (connections are
// refused) or hung (SIGSTOP: connections open, no answer).
var redisDownModes = []struct {
	name string
	stop func(t *testing.T, cmd *exec.Cmd)
}{
	{"killed", func(t *testing.T, cmd *exec.Cmd) {
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // for the port to close
	}},
	{"hung", func(t *testing.T, cmd *exec.Cmd) {
		if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}},
}

const redisTestTimeout = 300 * time.Millisecond

// TestRedisDown: with the server gone, Reserve and Adjust answer errors,
// no panic, within the timeout the relay gives them (limitTimeout: a
// context deadline of redis_timeout).
func TestRedisDown(t *testing.T) {
	for _, tt := range redisDownModes {
		t.Run(tt.name, func(t *testing.T) {
			port, cmd := redisServer(t)
			r := redisStore(t, port)
			key := Key("redis-down", tt.name)
			res, err := r.Reserve(context.Background(), key, longWindow, 10, 1)
			if err != nil || !res.Allowed {
				t.Fatalf("Reserve before: %+v, %v", res, err)
			}
			tt.stop(t, cmd)
			for i := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), redisTestTimeout)
				start := time.Now()
				res, err = r.Reserve(ctx, key, longWindow, 10, 1)
				took := time.Since(start)
				cancel()
				if err == nil {
					t.Fatalf("call %d: Reserve with the server %s = %+v, want an error", i, tt.name, res)
				}
				if took > redisTestTimeout+200*time.Millisecond {
					t.Fatalf("call %d: error after %v, want about the timeout %v", i, took, redisTestTimeout)
				}
				ctx, cancel = context.WithTimeout(context.Background(), redisTestTimeout)
				err = r.Adjust(ctx, key, longWindow, res.Window, -1)
				cancel()
				if err == nil {
					t.Fatalf("call %d: Adjust with the server %s succeeded", i, tt.name)
				}
			}
		})
	}
}

// TestRedisDownWithoutDeadline: the store itself keeps to redis_timeout
// ("A down Redis must fail a call within its timeout, not after go-redis's
// retries"), whatever context the caller passes.
func TestRedisDownWithoutDeadline(t *testing.T) {
	for _, tt := range redisDownModes {
		t.Run(tt.name, func(t *testing.T) {
			port, cmd := redisServer(t)
			r := redisStore(t, port)
			key := Key("redis-down-nodeadline", tt.name)
			if _, err := r.Reserve(context.Background(), key, longWindow, 10, 1); err != nil {
				t.Fatal(err)
			}
			tt.stop(t, cmd)
			for i := range 3 {
				start := time.Now()
				_, err := r.Reserve(context.Background(), key, longWindow, 10, 1)
				took := time.Since(start)
				if err == nil {
					t.Fatalf("call %d: Reserve with the server %s succeeded", i, tt.name)
				}
				if took > redisTestTimeout+100*time.Millisecond {
					t.Fatalf("call %d: error after %v, want within the timeout %v", i, took, redisTestTimeout)
				}
			}
		})
	}
}

// Package limit keeps the token budgets of ai-rate-limiting: counters in
// fixed windows, either in the runner (one set per node, exact for every
// nginx worker of it) or in Redis (shared by every node). A call reserves
// its estimate before it is made, atomically against the limit, and
// settles to its real usage when it ends, so concurrent calls cannot
// overspend by more than their estimates were wrong.
package limit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// Result is a reservation's answer.
type Result struct {
	Allowed bool
	// Remaining is what the window has left after the reservation (or,
	// refused, before it).
	Remaining int64
	// Reset is the time until the window ends.
	Reset time.Duration
	// Window identifies the window the reservation went into, for Adjust.
	Window int64
}

// Store holds counters. Keys are already hashed (Key); windows are fixed,
// aligned to the store's clock: window i covers [i·w, (i+1)·w).
type Store interface {
	// Reserve adds n to key's counter in the current window if the total
	// stays within limit; otherwise it adds nothing and refuses.
	Reserve(ctx context.Context, key string, w time.Duration, limit, n int64) (Result, error)
	// Adjust adds delta (negative to give back) to key's counter in the
	// given window, if that window still exists.
	Adjust(ctx context.Context, key string, w time.Duration, window, delta int64) error
}

// Key hashes a counter's identity parts: bounded length whatever the
// client sent, and no client value stored as such.
func Key(parts ...string) string {
	var buf [256]byte
	b := buf[:0]
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// ErrFull is a local store that holds as many counters as it may.
var ErrFull = errors.New("the runner holds its maximum number of rate-limit counters")

// Local is the in-runner store.
type Local struct {
	now func() time.Time
	max int

	mu       sync.Mutex
	counters map[string]*counter
	swept    time.Time
}

type counter struct {
	window int64
	used   int64
	ends   time.Time
}

// DefaultMaxCounters bounds a local store: keys come from client values
// (a header, an address), so their number must not grow without end.
const DefaultMaxCounters = 200_000

// NewLocal makes a local store of at most max counters (0 = the default).
func NewLocal(max int) *Local {
	if max <= 0 {
		max = DefaultMaxCounters
	}
	return &Local{now: time.Now, max: max, counters: map[string]*counter{}}
}

func window(now time.Time, w time.Duration) (idx int64, ends time.Time) {
	idx = now.UnixNano() / int64(w)
	return idx, time.Unix(0, (idx+1)*int64(w))
}

// Reserve implements Store.
func (l *Local) Reserve(_ context.Context, key string, w time.Duration, limit, n int64) (Result, error) {
	now := l.now()
	idx, ends := window(now, w)
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.counters[key]
	if !ok || c.window != idx {
		if !ok && len(l.counters) >= l.max {
			l.sweep(now)
			if len(l.counters) >= l.max {
				return Result{}, ErrFull
			}
		}
		c = &counter{window: idx, ends: ends}
		l.counters[key] = c
	}
	res := Result{Reset: ends.Sub(now), Window: idx}
	if c.used+n > limit {
		res.Remaining = max(limit-c.used, 0)
		return res, nil
	}
	c.used += n
	res.Allowed, res.Remaining = true, limit-c.used
	return res, nil
}

// Adjust implements Store.
func (l *Local) Adjust(_ context.Context, key string, _ time.Duration, window, delta int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.counters[key]; ok && c.window == window {
		c.used = max(c.used+delta, 0)
	}
	return nil
}

// sweep drops counters whose window has ended; l.mu is held. At most once
// a second: a full store under attack must not sweep on every call.
func (l *Local) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Second {
		return
	}
	l.swept = now
	for k, c := range l.counters {
		if !now.Before(c.ends) {
			delete(l.counters, k)
		}
	}
}

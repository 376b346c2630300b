// Package balance chooses which instance of an ai-proxy-multi route serves
// a call: priority tiers, weights or a consistent hash, model groups, and a
// passive circuit breaker per upstream that learns from the providers'
// own rate-limit headers.
package balance

import (
	"crypto/sha256"
	"net/http"
	"sync"
	"time"
)

// State is an upstream's place in the circuit breaker.
type State int

const (
	// Healthy upstreams take calls.
	Healthy State = iota
	// Cooling upstreams take none until their cooldown ends.
	Cooling
	// Trial upstreams have finished cooling: the next call is the one
	// trial whose outcome decides; others skip it meanwhile.
	Trial
)

func (s State) String() string {
	switch s {
	case Cooling:
		return "cooling"
	case Trial:
		return "trial"
	}
	return "healthy"
}

// Cooldowns without a time from the provider grow from backoffBase,
// doubling per consecutive failure up to backoffCap. A provider's own time
// is honoured up to maxCooldown: a hostile or broken one cannot park its
// instance for days.
const (
	backoffBase = time.Second
	backoffCap  = time.Minute
	maxCooldown = time.Hour
	// headroomFresh is how long headroom from an answer counts when the
	// provider gave no reset time.
	headroomFresh = time.Minute
)

// Verdict is what one attempt says about its upstream.
type Verdict int

const (
	// Neutral says nothing (the client left; the request was refused as
	// bad): a trial stays to be decided by the next call.
	Neutral Verdict = iota
	// Success means the upstream answered as it should.
	Success
	// RateLimited is a 429: cool for the time the provider says.
	RateLimited
	// Failed is a 5xx, a status the route names as failure, a timeout or a
	// connection failure: cool with backoff (or the provider's Retry-After).
	Failed
)

// Health is the passive health of one upstream identity: provider,
// endpoint and credentials. Routes and instances that call with the same
// key share one, so a 429 seen by one route is known to all, and all nginx
// workers share it because the runner is one process per node.
type Health struct {
	mu       sync.Mutex
	until    time.Time // cooling until
	failures int       // consecutive failures, for the backoff
	trial    bool      // the trial call is in flight
	reason   string    // why it cooled, for logs

	headroom      float64 // smallest remaining/limit fraction; -1 unknown
	headroomUntil time.Time
	lastUsed      time.Time
}

// NewHealth makes a healthy upstream of unknown headroom.
func NewHealth() *Health { return &Health{headroom: -1} }

// state is the breaker state at now; h.mu is held.
func (h *Health) state(now time.Time) State {
	switch {
	case now.Before(h.until):
		return Cooling
	case h.failures > 0 || h.trial:
		return Trial
	}
	return Healthy
}

// State reports the breaker state at now.
func (h *Health) State(now time.Time) State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state(now)
}

// acquire takes the upstream for one call if it may have one now; trial
// is true when this call is the trial. Otherwise it says when to ask again.
func (h *Health) acquire(now time.Time) (ok, trial bool, retryAt time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUsed = now
	switch h.state(now) {
	case Cooling:
		return false, false, h.until
	case Trial:
		if h.trial {
			// The trial is in flight; its outcome comes within a call's
			// timeout, so ask again shortly.
			return false, false, now.Add(backoffBase)
		}
		h.trial = true
		return true, true, time.Time{}
	}
	return true, false, time.Time{}
}

// weightFactor scales an instance's weight by its reported headroom: full
// weight above a fifth of the budget left, then less as it runs out, so
// calls drift to instances that can take them before any 429.
func (h *Health) weightFactor(now time.Time) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.headroom < 0 || !now.Before(h.headroomUntil) || h.headroom >= 0.2 {
		return 1
	}
	return max(h.headroom/0.2, 0.05)
}

// Release records the outcome of a call that acquire let through. hdr,
// when the upstream answered, carries its rate-limit headers. reason
// names the failure in logs.
func (h *Health) Release(trial bool, v Verdict, reason string, hdr http.Header, now time.Time) {
	var lim Limits
	if hdr != nil {
		lim = ParseLimits(hdr, now)
	} else {
		lim.Headroom = -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// A call that was already in flight when the upstream cooled (or went
	// on trial) reports the same event late: it must not lengthen the
	// backoff, nor heal an upstream that the trial is still judging.
	stale := !trial && (now.Before(h.until) || h.trial)
	if trial {
		h.trial = false
	}
	if lim.Headroom >= 0 {
		h.headroom = lim.Headroom
		fresh := lim.Reset
		if fresh <= 0 {
			fresh = headroomFresh
		}
		h.headroomUntil = now.Add(fresh)
	}
	switch v {
	case Neutral:
		return
	case Success:
		if !stale {
			h.failures, h.reason = 0, ""
		}
		// A success that reports no budget left: skip the upstream until
		// its reset instead of waiting for the 429.
		if lim.Exhausted && lim.Reset > 0 {
			h.cool(now, min(lim.Reset, maxCooldown), "rate_limit_exhausted")
		}
		return
	}
	wait := lim.RetryAfter
	if v == RateLimited && wait <= 0 {
		wait = lim.Reset
	}
	if stale {
		if wait > 0 { // the provider's own time still counts
			h.cool(now, min(wait, maxCooldown), reason)
		}
		return
	}
	h.failures++
	if wait <= 0 {
		wait = backoffBase << min(h.failures-1, 16)
		wait = min(wait, backoffCap)
	}
	h.cool(now, min(wait, maxCooldown), reason)
}

func (h *Health) cool(now time.Time, d time.Duration, reason string) {
	if until := now.Add(d); until.After(h.until) {
		h.until = until
	}
	h.reason = reason
}

// Reason is why the upstream cooled ("" once it is healthy again).
func (h *Health) Reason(now time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state(now) == Healthy {
		return ""
	}
	return h.reason
}

// Registry shares one Health per upstream identity.
type Registry struct {
	mu      sync.Mutex
	entries map[[32]byte]*Health
	swept   time.Time
}

// NewRegistry makes an empty registry.
func NewRegistry() *Registry { return &Registry{entries: map[[32]byte]*Health{}} }

// forgetAfter drops identities no call has used for this long; a conf that
// still holds one keeps using it, a new conf starts afresh.
const forgetAfter = time.Hour

// For returns the Health of the identity (any bytes that tell upstreams
// apart: provider, endpoint, credentials), hashed so no credential is
// kept as a map key.
func (r *Registry) For(identity []byte) *Health {
	key := sha256.Sum256(identity)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) > forgetAfter {
		for k, h := range r.entries {
			h.mu.Lock()
			old := now.Sub(h.lastUsed) > forgetAfter
			h.mu.Unlock()
			if old {
				delete(r.entries, k)
			}
		}
		r.swept = now
	}
	h, ok := r.entries[key]
	if !ok {
		h = NewHealth()
		h.lastUsed = now
		r.entries[key] = h
	}
	return h
}

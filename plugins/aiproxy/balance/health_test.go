package balance

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// healthT0 is the fixed "now" of the breaker tests.
var healthT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return healthT0.Add(d) }

// hdrs builds a header from name/value pairs with canonical keys.
func hdrs(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// onePool is a pool of a single member, so a Pick either grants it or
// says why not.
func onePool(t *testing.T) (*Pool, *Health) {
	t.Helper()
	h := NewHealth()
	p, err := NewPool([]Member{{Name: "only", Weight: 1, Health: h}}, RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	return p, h
}

// grant picks the only member at now and wants it granted with the given trial flag.
func grant(t *testing.T, p *Pool, now time.Time, wantTrial bool) {
	t.Helper()
	i, trial, err := p.Pick("", 0, 0, now)
	if err != nil {
		t.Fatalf("Pick at +%s: %v; want the member granted", now.Sub(healthT0), err)
	}
	if i != 0 || trial != wantTrial {
		t.Fatalf("Pick at +%s = %d, trial %v; want 0, trial %v", now.Sub(healthT0), i, trial, wantTrial)
	}
}

// refused picks at now and wants a *CoolingError with RetryAfter want.
func refused(t *testing.T, p *Pool, now time.Time, want time.Duration) {
	t.Helper()
	i, trial, err := p.Pick("", 0, 0, now)
	var ce *CoolingError
	if !errors.As(err, &ce) {
		t.Fatalf("Pick at +%s = %d, trial %v, %v; want *CoolingError", now.Sub(healthT0), i, trial, err)
	}
	if ce.RetryAfter != want {
		t.Fatalf("Pick at +%s: RetryAfter %s, want %s", now.Sub(healthT0), ce.RetryAfter, want)
	}
	if ce.Error() == "" {
		t.Fatal("empty message")
	}
}

func wantState(t *testing.T, h *Health, now time.Time, want State) {
	t.Helper()
	if got := h.State(now); got != want {
		t.Fatalf("State at +%s = %s, want %s", now.Sub(healthT0), got, want)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Healthy: "healthy", Cooling: "cooling", Trial: "trial"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestNewHealthIsHealthy(t *testing.T) {
	p, h := onePool(t)
	wantState(t, h, healthT0, Healthy)
	if h.Reason(healthT0) != "" {
		t.Fatalf("Reason = %q", h.Reason(healthT0))
	}
	// Healthy members take any number of concurrent calls, none a trial.
	for k := 0; k < 5; k++ {
		grant(t, p, healthT0, false)
	}
	h.Release(false, Success, "", nil, healthT0)
	wantState(t, h, healthT0, Healthy)
}

func TestRetryAfterCoolsThenOneTrial(t *testing.T) {
	p, h := onePool(t)
	grant(t, p, at(0), false)
	h.Release(false, RateLimited, "http_429", hdrs("Retry-After", "2"), at(0))
	if h.Reason(at(0)) != "http_429" {
		t.Fatalf("Reason = %q, want http_429", h.Reason(at(0)))
	}
	wantState(t, h, at(0), Cooling)
	wantState(t, h, at(1900*time.Millisecond), Cooling)
	refused(t, p, at(0), 2*time.Second)
	refused(t, p, at(1900*time.Millisecond), time.Second) // 0.1 s left, but at least 1 s

	// Exactly 2 s later: the member is granted, as the trial.
	wantState(t, h, at(2*time.Second), Trial)
	grant(t, p, at(2*time.Second), true)
	// While the trial is in flight no other call gets it.
	wantState(t, h, at(2*time.Second), Trial)
	refused(t, p, at(2*time.Second), time.Second)
	refused(t, p, at(3*time.Second), time.Second)

	// The trial succeeds: healthy, and calls are no longer trials.
	h.Release(true, Success, "", hdrs("X-Request-Id", "1"), at(3*time.Second))
	wantState(t, h, at(3*time.Second), Healthy)
	if h.Reason(at(3*time.Second)) != "" {
		t.Fatalf("Reason = %q after recovery", h.Reason(at(3*time.Second)))
	}
	grant(t, p, at(3*time.Second), false)
	grant(t, p, at(3*time.Second), false)
}

func TestRetryAfterSkipsMemberInMultiPool(t *testing.T) {
	a, b := NewHealth(), NewHealth()
	p, err := NewPool([]Member{{Name: "a", Weight: 1, Health: a}, {Name: "b", Weight: 1, Health: b}}, RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	a.Release(false, RateLimited, "http_429", hdrs("Retry-After", "2"), at(0))
	for k := 0; k < 10; k++ {
		if i, trial, err := p.Pick("", 0, 0, at(1900*time.Millisecond)); err != nil || i != 1 || trial {
			t.Fatalf("Pick at +1.9s = %d, %v, %v; want b, no trial", i, trial, err)
		}
	}
	// At +2 s a is back as a trial: the first pick that lands on it gets
	// the trial; no second call gets it while the trial is in flight.
	trials := 0
	for k := 0; k < 10; k++ {
		i, trial, err := p.Pick("", 0, 0, at(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if !trial {
				t.Fatal("a granted without a trial")
			}
			trials++
		} else if trial {
			t.Fatal("b's pick is a trial")
		}
	}
	if trials != 1 {
		t.Fatalf("a got %d trial calls, want exactly 1", trials)
	}
}

func TestTrialFailureBacksOffLonger(t *testing.T) {
	p, h := onePool(t)
	grant(t, p, at(0), false)
	h.Release(false, Failed, "http_502", nil, at(0))
	wantState(t, h, at(999*time.Millisecond), Cooling)
	refused(t, p, at(0), time.Second)
	grant(t, p, at(time.Second), true)
	h.Release(true, Failed, "http_502", nil, at(time.Second))
	// Cooling again, now for 2 s.
	wantState(t, h, at(time.Second), Cooling)
	refused(t, p, at(time.Second), 2*time.Second)
	wantState(t, h, at(2999*time.Millisecond), Cooling)
	grant(t, p, at(3*time.Second), true)
}

func TestFailedBackoffDoublesToCap(t *testing.T) {
	p, h := onePool(t)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60}
	now := at(0)
	grant(t, p, now, false)
	for n, w := range want {
		w *= time.Second
		trial := n > 0
		h.Release(trial, Failed, "timeout", nil, now)
		wantState(t, h, now.Add(w-time.Nanosecond), Cooling)
		refused(t, p, now, w)
		now = now.Add(w)
		wantState(t, h, now, Trial)
		grant(t, p, now, true)
	}
	h.Release(true, Success, "", nil, now)
	wantState(t, h, now, Healthy)
	// A new failure after recovery starts the backoff afresh.
	grant(t, p, now, false)
	h.Release(false, Failed, "timeout", nil, now)
	refused(t, p, now, time.Second)
}

func TestNeutralReleaseKeepsTrial(t *testing.T) {
	p, h := onePool(t)
	h.Release(false, Failed, "http_500", nil, at(0))
	grant(t, p, at(time.Second), true)
	h.Release(true, Neutral, "", nil, at(time.Second))
	wantState(t, h, at(time.Second), Trial)
	// The next pick is the trial, and only one.
	grant(t, p, at(time.Second), true)
	refused(t, p, at(time.Second), time.Second)
	h.Release(true, Success, "", nil, at(time.Second))
	wantState(t, h, at(time.Second), Healthy)
	grant(t, p, at(time.Second), false)
}

func TestNeutralReleaseOfHealthyChangesNothing(t *testing.T) {
	_, h := onePool(t)
	h.Release(false, Neutral, "", nil, at(0))
	wantState(t, h, at(0), Healthy)
	h.Release(false, Neutral, "", hdrs("Retry-After", "30"), at(0))
	wantState(t, h, at(0), Healthy)
}

func TestCooldownTimes(t *testing.T) {
	tests := []struct {
		name    string
		verdict Verdict
		hdr     http.Header
		want    time.Duration
	}{
		{"429 retry-after seconds", RateLimited, hdrs("Retry-After", "2"), 2 * time.Second},
		{"429 retry-after-ms", RateLimited, hdrs("Retry-After-Ms", "1500"), 1500 * time.Millisecond},
		{"429 reset when no retry-after", RateLimited, hdrs("X-Ratelimit-Reset-Requests", "7s"), 7 * time.Second},
		{"429 without any time backs off", RateLimited, hdrs("X-Request-Id", "x"), time.Second},
		{"429 nil header backs off", RateLimited, nil, time.Second},
		{"5xx retry-after", Failed, hdrs("Retry-After", "30"), 30 * time.Second},
		{"5xx without headers", Failed, nil, time.Second},
		{"429 retry-after capped at an hour", RateLimited, hdrs("Retry-After", "7200"), time.Hour},
		{"429 reset capped at an hour", RateLimited, hdrs("X-Ratelimit-Reset-Tokens", "30h"), time.Hour},
		{"5xx retry-after capped at an hour", Failed, hdrs("Retry-After", "86400"), time.Hour},
		{"429 retry-after as HTTP date", RateLimited, hdrs("Retry-After", healthT0.Add(90*time.Second).Format(http.TimeFormat)), 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, h := onePool(t)
			h.Release(false, tt.verdict, "r", tt.hdr, at(0))
			wantState(t, h, at(tt.want-time.Nanosecond), Cooling)
			wantState(t, h, at(tt.want), Trial)
			refused(t, p, at(0), max(tt.want, time.Second))
			grant(t, p, at(tt.want), true)
		})
	}
}

func TestCoolingErrorRetryAfterIsSoonest(t *testing.T) {
	hs := []*Health{NewHealth(), NewHealth(), NewHealth()}
	p, err := NewPool([]Member{
		{Name: "a", Weight: 1, Priority: 1, Health: hs[0]},
		{Name: "b", Weight: 1, Health: hs[1]},
		{Name: "c", Weight: 1, Health: hs[2]},
	}, RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	hs[0].Release(false, RateLimited, "", hdrs("Retry-After", "20"), at(0))
	hs[1].Release(false, RateLimited, "", hdrs("Retry-After", "5"), at(0))
	hs[2].Release(false, RateLimited, "", hdrs("Retry-After", "9"), at(0))
	tests := []struct {
		now  time.Duration
		want time.Duration
	}{
		{0, 5 * time.Second},
		{2 * time.Second, 3 * time.Second},
		{4500 * time.Millisecond, time.Second}, // 0.5 s left: at least 1 s
	}
	for _, tt := range tests {
		refused(t, p, at(tt.now), tt.want)
	}
	// A call that tried every member is exhausted, not cooling.
	all := Tried(0).Add(0).Add(1).Add(2)
	if _, _, err := p.Pick("", 0, all, at(0)); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Pick with all tried = %v, want ErrExhausted", err)
	}
	// b's cooldown ends first: it is the one granted, as a trial.
	i, trial, err := p.Pick("", 0, 0, at(5*time.Second))
	if err != nil || i != 1 || !trial {
		t.Fatalf("Pick at +5s = %d, %v, %v; want b as a trial", i, trial, err)
	}
}

func TestExhaustedSuccessCoolsUntilReset(t *testing.T) {
	p, h := onePool(t)
	grant(t, p, at(0), false)
	h.Release(false, Success, "", hdrs(
		"X-Ratelimit-Limit-Requests", "100",
		"X-Ratelimit-Remaining-Requests", "0",
		"X-Ratelimit-Reset-Requests", "5s",
	), at(0))
	if h.Reason(at(0)) != "rate_limit_exhausted" {
		t.Fatalf("Reason = %q, want rate_limit_exhausted", h.Reason(at(0)))
	}
	wantState(t, h, at(0), Cooling)
	wantState(t, h, at(5*time.Second-time.Nanosecond), Cooling)
	refused(t, p, at(0), 5*time.Second)
	// No failure happened: once the budget resets it is healthy, no trial.
	wantState(t, h, at(5*time.Second), Healthy)
	grant(t, p, at(5*time.Second), false)
	grant(t, p, at(5*time.Second), false)
}

func TestExhaustedSuccessWithoutResetDoesNotCool(t *testing.T) {
	_, h := onePool(t)
	h.Release(false, Success, "", hdrs("X-Ratelimit-Remaining-Requests", "0"), at(0))
	wantState(t, h, at(0), Healthy)
}

func TestExhaustedSuccessCappedAtAnHour(t *testing.T) {
	_, h := onePool(t)
	h.Release(false, Success, "", hdrs(
		"X-Ratelimit-Remaining-Tokens", "0",
		"X-Ratelimit-Reset-Tokens", "5h",
	), at(0))
	wantState(t, h, at(time.Hour-time.Nanosecond), Cooling)
	wantState(t, h, at(time.Hour), Healthy)
}

func TestWeightFactor(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		remaining int
		want      float64
	}{
		{"plenty", 100, 50, 1},
		{"a fifth", 100, 20, 1},
		{"a tenth", 100, 10, 0.5},
		{"one of a hundred", 100, 1, 0.05},
		{"one of a thousand floors", 1000, 1, 0.05},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth()
			if f := h.weightFactor(at(0)); f != 1 {
				t.Fatalf("unknown headroom factor %v, want 1", f)
			}
			h.Release(false, Success, "", hdrs(
				"X-Ratelimit-Limit-Requests", strconv.Itoa(tt.limit),
				"X-Ratelimit-Remaining-Requests", strconv.Itoa(tt.remaining),
			), at(0))
			if f := h.weightFactor(at(time.Second)); f < tt.want-1e-9 || f > tt.want+1e-9 {
				t.Fatalf("factor %v, want %v", f, tt.want)
			}
			// Without a reset time, headroom counts for a minute.
			if f := h.weightFactor(at(time.Minute)); f != 1 {
				t.Fatalf("factor a minute later %v, want 1", f)
			}
		})
	}
}

func TestRegistryFor(t *testing.T) {
	r := NewRegistry()
	a := r.For([]byte("openai\x01https://api.openai.com\x01Bearer sk-1"))
	b := r.For([]byte("openai\x01https://api.openai.com\x01Bearer sk-2"))
	c := r.For([]byte("openai\x01https://api.openai.com\x01Bearer sk-1"))
	e1, e2 := r.For(nil), r.For([]byte{})
	if a == nil || b == nil {
		t.Fatal("nil health")
	}
	if a != c {
		t.Fatal("the same identity got two healths")
	}
	if a == b {
		t.Fatal("different identities share a health")
	}
	if e1 != e2 {
		t.Fatal("nil and empty identities are the same bytes")
	}
	// A registry shares state, not just pointers: a cooldown is seen by all.
	a.Release(false, RateLimited, "", hdrs("Retry-After", "10"), at(0))
	if c.State(at(time.Second)) != Cooling || b.State(at(time.Second)) != Healthy {
		t.Fatal("cooldown not shared by identity")
	}
	// Another registry is another world.
	if NewRegistry().For([]byte("openai\x01https://api.openai.com\x01Bearer sk-1")) == a {
		t.Fatal("two registries share a health")
	}
}

package balance

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

var limitsNow = time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func rfc3339In(d time.Duration) string { return limitsNow.Add(d).Format(time.RFC3339) }

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want Limits
	}{
		{"empty", header(), Limits{Headroom: -1}},
		{"openai", header(
			"x-ratelimit-limit-requests", "10000",
			"x-ratelimit-remaining-requests", "9000",
			"x-ratelimit-reset-requests", "6ms",
			"x-ratelimit-limit-tokens", "1000000",
			"x-ratelimit-remaining-tokens", "500000",
			"x-ratelimit-reset-tokens", "1h2m3.5s",
		), Limits{Reset: 6 * time.Millisecond, Headroom: 0.5}},
		{"groq fractional reset", header(
			"x-ratelimit-reset-requests", "2m59.56s",
		), Limits{Reset: 2*time.Minute + 59560*time.Millisecond, Headroom: -1}},
		{"plain seconds reset", header(
			"x-ratelimit-reset-requests", "12",
			"x-ratelimit-reset-tokens", "0.5",
		), Limits{Reset: 500 * time.Millisecond, Headroom: -1}},
		{"zero reset is reported", header(
			"x-ratelimit-reset-requests", "0s",
			"x-ratelimit-reset-tokens", "20ms",
		), Limits{Headroom: -1}},
		{"anthropic", header(
			"anthropic-ratelimit-requests-limit", "50",
			"anthropic-ratelimit-requests-remaining", "40",
			"anthropic-ratelimit-requests-reset", rfc3339In(30*time.Second),
			"anthropic-ratelimit-input-tokens-limit", "40000",
			"anthropic-ratelimit-input-tokens-remaining", "10000",
			"anthropic-ratelimit-input-tokens-reset", rfc3339In(10*time.Second),
			"anthropic-ratelimit-output-tokens-limit", "8000",
			"anthropic-ratelimit-output-tokens-remaining", "8000",
			"anthropic-ratelimit-output-tokens-reset", rfc3339In(time.Minute),
		), Limits{Reset: 10 * time.Second, Headroom: 0.25}},
		{"anthropic past reset is a zero wait", header(
			"anthropic-ratelimit-tokens-reset", rfc3339In(-time.Hour),
			"anthropic-ratelimit-requests-reset", rfc3339In(time.Minute),
		), Limits{Headroom: -1}},
		{"anthropic exhausted", header(
			"anthropic-ratelimit-requests-remaining", "3",
			"anthropic-ratelimit-requests-reset", rfc3339In(5*time.Second),
			"anthropic-ratelimit-input-tokens-remaining", "0",
			"anthropic-ratelimit-input-tokens-reset", rfc3339In(time.Minute),
			"anthropic-ratelimit-output-tokens-remaining", "0",
			"anthropic-ratelimit-output-tokens-reset", rfc3339In(2*time.Minute),
		), Limits{Exhausted: true, Reset: 2 * time.Minute, Headroom: -1}},
		{"retry-after-ms wins", header(
			"retry-after-ms", "1500.5",
			"Retry-After", "30",
		), Limits{RetryAfter: 1500500 * time.Microsecond, Headroom: -1}},
		{"invalid retry-after-ms falls back", header(
			"retry-after-ms", "soon",
			"Retry-After", "30",
		), Limits{RetryAfter: 30 * time.Second, Headroom: -1}},
		{"fractional Retry-After", header("Retry-After", "1.5"),
			Limits{RetryAfter: 1500 * time.Millisecond, Headroom: -1}},
		{"HTTP-date Retry-After", header("Retry-After", limitsNow.Add(90*time.Second).Format(http.TimeFormat)),
			Limits{RetryAfter: 90 * time.Second, Headroom: -1}},
		{"RFC 850 Retry-After", header("Retry-After", limitsNow.Add(time.Minute).Format(time.RFC850)),
			Limits{RetryAfter: time.Minute, Headroom: -1}},
		{"past HTTP-date Retry-After", header("Retry-After", limitsNow.Add(-time.Hour).Format(http.TimeFormat)),
			Limits{Headroom: -1}},
		{"requests and tokens exhausted: latest reset", header(
			"x-ratelimit-remaining-requests", "0",
			"x-ratelimit-reset-requests", "1s",
			"x-ratelimit-remaining-tokens", "0",
			"x-ratelimit-reset-tokens", "6m0s",
		), Limits{Exhausted: true, Reset: 6 * time.Minute, Headroom: -1}},
		{"only tokens exhausted: its reset, not the sooner one", header(
			"x-ratelimit-limit-requests", "100",
			"x-ratelimit-remaining-requests", "5",
			"x-ratelimit-reset-requests", "1s",
			"x-ratelimit-limit-tokens", "1000",
			"x-ratelimit-remaining-tokens", "0",
			"x-ratelimit-reset-tokens", "20s",
		), Limits{Exhausted: true, Reset: 20 * time.Second, Headroom: 0}},
		{"exhausted without its reset", header(
			"x-ratelimit-remaining-requests", "0",
			"x-ratelimit-reset-tokens", "20s",
		), Limits{Exhausted: true, Headroom: -1}},
		{"headroom min across families", header(
			"x-ratelimit-limit-requests", "10",
			"x-ratelimit-remaining-requests", "9",
			"anthropic-ratelimit-tokens-limit", "1000",
			"anthropic-ratelimit-tokens-remaining", "300",
		), Limits{Headroom: 0.3}},
		{"headroom clamped to 1", header(
			"x-ratelimit-limit-requests", "10",
			"x-ratelimit-remaining-requests", "50",
		), Limits{Headroom: 1}},
		{"limit 0 gives no headroom", header(
			"x-ratelimit-limit-requests", "0",
			"x-ratelimit-remaining-requests", "0",
		), Limits{Exhausted: true, Headroom: -1}},
		{"spaces trimmed", header(
			"Retry-After", "  7 ",
			"x-ratelimit-limit-tokens", " 200 ",
			"x-ratelimit-remaining-tokens", "\t50",
			"x-ratelimit-reset-tokens", " 1m ",
		), Limits{RetryAfter: 7 * time.Second, Reset: time.Minute, Headroom: 0.25}},
		{"huge Retry-After clamps", header("Retry-After", "99999999999999999999"),
			Limits{RetryAfter: maxWait, Headroom: -1}},
		{"huge retry-after-ms clamps", header("retry-after-ms", strings.Repeat("9", 400)),
			Limits{RetryAfter: maxWait, Headroom: -1}},
		{"far HTTP-date clamps", header("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
			Limits{RetryAfter: maxWait, Headroom: -1}},
		{"overflowing reset clamps", header("x-ratelimit-reset-requests", "9999999h"),
			Limits{Reset: maxWait, Headroom: -1}},
		{"long reset clamps", header("x-ratelimit-reset-requests", "25h"),
			Limits{Reset: maxWait, Headroom: -1}},
		{"far anthropic reset clamps", header("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
			Limits{Reset: maxWait, Headroom: -1}},
		{"hostile values ignored", header(
			"retry-after-ms", "NaN",
			"Retry-After", "-5",
			"x-ratelimit-limit-requests", "-1",
			"x-ratelimit-remaining-requests", "1e3",
			"x-ratelimit-reset-requests", "-1s",
			"x-ratelimit-limit-tokens", "99999999999999999999",
			"x-ratelimit-remaining-tokens", "",
			"x-ratelimit-reset-tokens", "Inf",
			"anthropic-ratelimit-requests-remaining", "+0",
			"anthropic-ratelimit-requests-reset", "tomorrow",
			"anthropic-ratelimit-tokens-reset", "+Inf",
		), Limits{Headroom: -1}},
		{"more hostile durations ignored", header(
			"Retry-After", "Inf",
			"x-ratelimit-reset-requests", "1..5s",
			"x-ratelimit-reset-tokens", "+9999999h",
		), Limits{Headroom: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseLimits(tt.h, limitsNow); got != tt.want {
				t.Errorf("ParseLimits() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseLimits(f *testing.F) {
	names := []string{"retry-after-ms", "Retry-After"}
	for _, d := range dimensions {
		names = append(names, d.limit, d.remaining, d.reset)
	}
	for _, s := range []string{
		"", "0", "12", "0.5", "1h2m3.5s", "9999999h", "-1s", "NaN", "+Inf", " 7 ",
		"99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "2026-12-02T15:04:05Z",
		"5\n0\n1s\n100\n0\n6m0s",
	} {
		f.Add(s, limitsNow.Unix())
	}
	f.Fuzz(func(t *testing.T, raw string, sec int64) {
		now := time.Unix(sec, 0)
		// Every header the same value reaches each parser; one value per
		// header lets dimensions disagree with each other.
		same, split := http.Header{}, http.Header{}
		parts := strings.Split(raw, "\n")
		for i, n := range names {
			same.Set(n, raw)
			if i < len(parts) {
				split.Set(n, parts[i])
			}
		}
		for _, h := range []http.Header{same, split} {
			l := ParseLimits(h, now)
			for _, d := range []time.Duration{l.RetryAfter, l.Reset} {
				if d < 0 || d > maxWait {
					t.Fatalf("duration %v out of range: %+v", d, l)
				}
			}
			if l.Headroom != -1 && !(l.Headroom >= 0 && l.Headroom <= 1) || math.IsNaN(l.Headroom) {
				t.Fatalf("headroom out of range: %+v", l)
			}
		}
	})
}

package balance

import (
	"net/http"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxWait bounds every wait a provider can impose: a hostile or broken
// header must not park an instance for longer than an operator would notice.
const maxWait = 24 * time.Hour

// Limits is what one provider answer's headers say about the caller's rate limits.
type Limits struct {
	// RetryAfter is the provider's explicit wait: `retry-after-ms` (milliseconds, may be fractional; wins when present and valid),
	// else `Retry-After` (delta-seconds, integer or fractional; or an HTTP-date, relative to now). 0 = none.
	RetryAfter time.Duration
	// Exhausted is true when some reported remaining count (requests or tokens, any family below) is 0.
	Exhausted bool
	// Reset: when Exhausted, the LATEST reset among the exhausted dimensions (the instance is unusable until all of them reset);
	// otherwise the SOONEST reset among all reported dimensions. 0 = none reported.
	Reset time.Duration
	// Headroom is the smallest remaining/limit fraction among dimensions reported with both a limit > 0 and a remaining >= 0,
	// clamped to [0,1]; -1 when no dimension has both.
	Headroom float64
}

// dimension names the three headers one rate-limited quantity is reported in
// and how its reset is spelled, which differs per provider family.
type dimension struct {
	limit, remaining, reset string
	parseReset              func(v string, now time.Time) (time.Duration, bool)
}

// Names are kept canonical so reading them is a map lookup: every answer
// of an ai-proxy-multi route is parsed.
var dimensions = func() []dimension {
	var ds []dimension
	c := textproto.CanonicalMIMEHeaderKey
	// OpenAI, Azure OpenAI, Groq, DeepSeek.
	for _, k := range []string{"requests", "tokens"} {
		ds = append(ds, dimension{c("x-ratelimit-limit-" + k), c("x-ratelimit-remaining-" + k), c("x-ratelimit-reset-" + k), parseGoDuration})
	}
	for _, k := range []string{"requests", "tokens", "input-tokens", "output-tokens"} {
		p := "anthropic-ratelimit-" + k
		ds = append(ds, dimension{c(p + "-limit"), c(p + "-remaining"), c(p + "-reset"), parseUntil(time.RFC3339)})
	}
	return ds
}()

// get reads a header by its canonical name without canonicalizing again.
func get(h http.Header, canonical string) string {
	if v := h[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ParseLimits reads h; malformed, negative or absurd values are ignored, never an error.
func ParseLimits(h http.Header, now time.Time) Limits {
	l := Limits{Headroom: -1}
	if d, ok := parseSeconds(get(h, "Retry-After-Ms"), time.Millisecond); ok {
		l.RetryAfter = d
	} else if v := get(h, "Retry-After"); v != "" {
		if d, ok := parseSeconds(v, time.Second); ok {
			l.RetryAfter = d
		} else if t, err := http.ParseTime(strings.TrimSpace(v)); err == nil {
			l.RetryAfter = until(t, now)
		}
	}

	var soonest, latestExhausted time.Duration
	haveSoonest := false
	for _, d := range dimensions {
		if get(h, d.limit) == "" && get(h, d.remaining) == "" && get(h, d.reset) == "" {
			continue // most answers carry none: skip the parsers' error values
		}
		limit, hasLimit := parseCount(get(h, d.limit))
		remaining, hasRemaining := parseCount(get(h, d.remaining))
		reset, hasReset := d.parseReset(get(h, d.reset), now)
		if hasReset && (!haveSoonest || reset < soonest) {
			soonest, haveSoonest = reset, true
		}
		if hasRemaining && remaining == 0 {
			l.Exhausted = true
			latestExhausted = max(latestExhausted, reset) // reset is 0 when unreported
		}
		if hasLimit && hasRemaining && limit > 0 {
			f := min(float64(remaining)/float64(limit), 1)
			if l.Headroom < 0 || f < l.Headroom {
				l.Headroom = f
			}
		}
	}
	// A non-exhausted dimension's reset says nothing about when an exhausted
	// one frees up, so the two cases never mix.
	if l.Exhausted {
		l.Reset = latestExhausted
	} else {
		l.Reset = soonest
	}
	return l
}

// parseCount accepts only plain non-negative integers; ParseUint with 63
// bits rejects signs and anything that would not fit an int64.
func parseCount(v string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
	return n, err == nil
}

// parseSeconds reads a plain decimal number of units. Restricting the syntax
// to digits and one dot keeps out what ParseFloat would also take: signs,
// exponents, hex, "NaN" and "Inf".
func parseSeconds(v string, unit time.Duration) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	digits, dots := 0, 0
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return 0, false
		}
	}
	if digits == 0 || dots > 1 {
		return 0, false
	}
	// A valid decimal can only fail by overflowing to +Inf, which clamps below.
	f, _ := strconv.ParseFloat(v, 64)
	if f*float64(unit) >= float64(maxWait) {
		return maxWait, true
	}
	return time.Duration(f * float64(unit)), true
}

// goDuration is the grammar time.ParseDuration accepts, minus the sign, so
// that a well-formed value it rejects can only have overflowed.
var goDuration = regexp.MustCompile(`^(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$`)

func parseGoDuration(v string, _ time.Time) (time.Duration, bool) {
	if d, ok := parseSeconds(v, time.Second); ok {
		return d, true
	}
	v = strings.TrimSpace(v)
	d, err := time.ParseDuration(v)
	switch {
	case err == nil && d >= 0:
		return min(d, maxWait), true
	case err != nil && goDuration.MatchString(v):
		return maxWait, true
	}
	return 0, false
}

// parseUntil reads an absolute time in layout and turns it into a wait.
func parseUntil(layout string) func(string, time.Time) (time.Duration, bool) {
	return func(v string, now time.Time) (time.Duration, bool) {
		t, err := time.Parse(layout, strings.TrimSpace(v))
		if err != nil {
			return 0, false
		}
		return until(t, now), true
	}
}

// until is the wait from now to t. A past t means the provider's clock is
// ahead or the limit already reset: no wait, but still a report.
// Time.Sub saturates instead of overflowing, so far-off dates are safe.
func until(t, now time.Time) time.Duration {
	return min(max(t.Sub(now), 0), maxWait)
}

package aiproxy

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// HashHeader carries an ai-proxy-multi chash route's key, hashed, from the
// pre-req filter (which can ask APISIX for variables and the consumer) to
// the relay. APISIX's Rewrite replaces any value a client sent.
const HashHeader = "X-AI-Proxy-Hash"

// attemptLog is one attempt of a call, for the call log.
type attemptLog struct {
	instance, provider string
	status             int
	duration           time.Duration
	reason             string // why the call moved on or failed; "" = it did not
}

// attempt sends the call to the route's instance, and for ai-proxy-multi
// on to others while the route's fallback allows and nothing has reached
// the client yet.
func (p *Plugin) attempt(w http.ResponseWriter, r *http.Request, c *call, body []byte) {
	conf := c.conf
	var key uint64
	if conf.Hash != nil {
		key = hashKey(conf.Hash, r)
	}
	var tried balance.Tried
	var last *outcome
	defer func() {
		if last != nil {
			last.free()
		}
		// The call's last attempt holds its budgets until here: a stream
		// has its usage only now (and a broken one panics through).
		if c.limits != nil {
			if c.limits.Redis != nil && c.status/100 == 2 {
				// The answer is whole: let it reach APISIX before the
				// Redis round trip that settles its budget.
				_ = http.NewResponseController(w).Flush()
			}
			p.settle(c, c.limits, c.status/100 != 2)
		}
	}()
	for n := 0; ; n++ {
		idx, trial := 0, false
		if conf.Pool != nil {
			var err error
			idx, trial, err = conf.Pool.Pick(c.clientModel, key, tried, time.Now())
			if err != nil {
				p.noneLeft(w, r, c, last, err)
				return
			}
		}
		if last != nil {
			last.free()
			last = nil
		}
		tried = tried.Add(idx)
		o, final := p.try(w, r, c, conf.Instances[idx], trial, body)
		if final {
			return
		}
		if o.refused != nil {
			// The instance's budget is spent (or its counters are down).
			if conf.Pool != nil && conf.Fallback.RateLimiting && o.refused.backend == nil {
				c.refused = o.refused
				continue
			}
			p.refuse(w, c, c.limits, o.refused)
			return
		}
		if c.limits != nil {
			p.settle(c, c.limits, true) // a failed attempt gives its budget back
		}
		a := &c.attempts[len(c.attempts)-1]
		f := &conf.Fallback
		switch {
		case conf.Pool == nil || r.Context().Err() != nil || a.reason == "response_too_large" || !f.moves(o.status, a.transport()):
		case f.MaxRetries >= 0 && n >= f.MaxRetries:
			a.reason += " (max_retries reached)"
		case f.Within > 0 && a.duration > f.Within:
			a.reason += " (slower than retry_on_failure_within_ms)"
		default:
			c.fallbackReason = a.reason
			last = &o
			continue
		}
		p.deliver(w, r, c, &o)
		o.free()
		return
	}
}

// hashKey is a chash route's key for r. The pre-req filter runs before
// APISIX's authentication, so the consumer comes from the header APISIX
// sets once it has authenticated one (3.x since 2024; older ones never
// set it and every call falls back). As in APISIX, an empty key falls back
// to the client's address.
func hashKey(h *HashKey, r *http.Request) uint64 {
	var s string
	switch h.On {
	case "header":
		s = r.Header.Get(h.Key)
	case "cookie":
		if ck, err := r.Cookie(h.Key); err == nil {
			s = ck.Value
		}
	case "consumer":
		s = r.Header.Get("X-Consumer-Username")
	default:
		if k, err := strconv.ParseUint(r.Header.Get(HashHeader), 16, 64); err == nil {
			return k
		}
	}
	if s == "" {
		s = clientIP(r)
	}
	return balance.HashKey(s)
}

// noneLeft answers a call for which the balancer has no instance left.
//
//go:noinline
func (p *Plugin) noneLeft(w http.ResponseWriter, r *http.Request, c *call, last *outcome, err error) {
	switch {
	case last != nil:
		p.deliver(w, r, c, last)
	case c.refused != nil:
		p.refuse(w, c, c.limits, c.refused)
	default:
		noInstance(w, c, err)
	}
}

// transport says the attempt failed without an HTTP answer.
func (a *attemptLog) transport() bool { return a.status == 0 }

// try makes one attempt on inst. final is true when the call is over
// (answered, or failed in a way no other instance would change).
func (p *Plugin) try(w http.ResponseWriter, r *http.Request, c *call, inst *Instance, trial bool, body []byte) (o outcome, final bool) {
	c.inst, c.provider = inst, inst.ProviderName
	c.tries++
	out, err := inst.Provider.Prepare(providers.Inbound{Protocol: c.proto, Path: r.URL.Path, Body: body})
	if err != nil {
		prepareFailed(w, c, inst, trial, err)
		return o, true
	}
	c.api, c.stream, c.usageAdded = out.API, out.Stream, out.UsageAdded
	c.upProto, c.reader, c.writer, c.hub = out.Upstream, out.Reader, out.Writer, out.Hub
	if c.clientModel == "" {
		// The client named none: the request model is the instance's.
		c.requestModel = out.Model
	}
	if c.limits != nil {
		if rf := p.admit(r, c, inst, trial, out.Body); rf != nil {
			return outcome{refused: rf}, false
		}
	}
	start := time.Now()
	c.attempts = append(c.attempts, attemptLog{instance: inst.Name, provider: inst.ProviderName})
	defer func() {
		// Deferred so a stream the client broke (a panic out of the
		// handler) still releases its trial.
		a := &c.attempts[len(c.attempts)-1]
		a.duration = time.Since(start)
		verdict := balance.Success
		switch {
		case o.written || (o.status == 0 && o.err == nil):
			a.status = c.status
		case o.status != 0:
			a.status = o.status
			a.reason = "http_" + strconv.Itoa(o.status)
			verdict = p.statusVerdict(c.conf, o.status)
		default:
			a.reason, verdict = errReason(r, o)
		}
		if inst.health != nil {
			inst.health.Release(trial, verdict, a.reason, o.header, time.Now())
		}
		p.metrics.attempt(c, a)
	}()
	p.forward(w, r, c, out, &o)
	return o, o.written
}

// prepareFailed answers a body the instance's adapter refused.
//
//go:noinline
func prepareFailed(w http.ResponseWriter, c *call, inst *Instance, trial bool, err error) {
	if inst.health != nil {
		inst.health.Release(trial, balance.Neutral, "", nil, time.Now())
	}
	status, kind := http.StatusBadRequest, "invalid_request"
	var pe *providers.Error
	if errors.As(err, &pe) {
		status, kind = pe.Status, pe.Code
	}
	c.fail(w, status, kind, err.Error())
}

// admit reserves the attempt's budgets; a refusal is logged as an
// attempt that did not reach the provider.
//
//go:noinline
func (p *Plugin) admit(r *http.Request, c *call, inst *Instance, trial bool, upstream []byte) *refusal {
	rf := p.reserve(r, c, c.limits, inst, estimate(c.limits, inst, c, upstream))
	if rf != nil {
		if inst.health != nil {
			inst.health.Release(trial, balance.Neutral, "", nil, time.Now())
		}
		c.attempts = append(c.attempts, attemptLog{instance: inst.Name, provider: inst.ProviderName, reason: "budget_spent"})
	}
	return rf
}

func (p *Plugin) statusVerdict(conf *Conf, status int) balance.Verdict {
	switch {
	case status == http.StatusTooManyRequests:
		return balance.RateLimited
	case status >= 500, conf.Fallback.Statuses[status]:
		return balance.Failed
	}
	// Any other answer (a 400 for a bad request) shows the upstream works.
	return balance.Success
}

// errReason names an attempt that got no answer, and what it says of the
// upstream.
func errReason(r *http.Request, o outcome) (string, balance.Verdict) {
	var tooLarge errTooLarge
	var invalid errInvalidAnswer
	var auth errAuth
	switch {
	case o.limit != "":
		return "timeout", balance.Failed
	case r.Context().Err() != nil:
		return "client_closed", balance.Neutral
	case errors.As(o.err, &tooLarge):
		return "response_too_large", balance.Neutral
	case errors.As(o.err, &invalid):
		return "invalid_response", balance.Failed
	case errors.As(o.err, &auth):
		return "auth_failed", balance.Failed
	}
	return "connect_error", balance.Failed
}

// deliver answers the client with an attempt that was not written.
func (p *Plugin) deliver(w http.ResponseWriter, r *http.Request, c *call, o *outcome) {
	if o.body != nil {
		p.writeWhole(w, c, o.status, o.header, [][]byte{o.body.Bytes()}, nil)
		return
	}
	p.failUpstream(w, r, c, o.limit, o.err)
}

// noInstance answers a call the balancer found no instance for.
func noInstance(w http.ResponseWriter, c *call, err error) {
	var unknown *balance.UnknownModelError
	var cooling *balance.CoolingError
	switch {
	case errors.As(err, &unknown):
		c.fail(w, http.StatusBadRequest, "model_not_served", err.Error())
	case errors.As(err, &cooling):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(cooling.RetryAfter.Seconds()))))
		c.fail(w, http.StatusServiceUnavailable, "instances_cooling", err.Error())
	default:
		c.fail(w, http.StatusServiceUnavailable, "no_instance_available", err.Error())
	}
}

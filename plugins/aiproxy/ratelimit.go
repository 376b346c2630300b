package aiproxy

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// LimitHeader carries a ticket for the route's ai-rate-limiting conf from
// its pre-req filter to the relay. Like the relay ticket it is minted with
// the process key and good once, so a client can neither forge nor strip
// it (APISIX's Rewrite replaces what a client sent).
const LimitHeader = "X-AI-Proxy-Limit"

// reservation is one budget a call's attempt holds.
type reservation struct {
	store  limit.Store
	key    string
	window time.Duration
	index  int64
	held   int64
}

// quota is what the response headers say of one budget.
type quota struct {
	limit, remaining int64
	reset            time.Duration
	names            quotaNames
}

// quotaNames are a budget's header names, canonical: X-AI-RateLimit-Limit-
// <instance> or, for rules, X-AI-<prefix>-RateLimit-Limit, as APISIX
// names them.
type quotaNames struct{ limit, remaining, reset string }

func newQuotaNames(l, rem, reset string) quotaNames {
	c := textproto.CanonicalMIMEHeaderKey
	return quotaNames{c(l), c(rem), c(reset)}
}

// instanceNames are the quota header names of an instance's budget.
func (lc *LimitConf) instanceNames(name string) quotaNames {
	if n, ok := lc.names.Load(name); ok {
		return n.(quotaNames)
	}
	n := newQuotaNames("X-AI-RateLimit-Limit-"+name, "X-AI-RateLimit-Remaining-"+name, "X-AI-RateLimit-Reset-"+name)
	lc.names.Store(name, n)
	return n
}

// refusal is an attempt the route's budgets did not admit.
type refusal struct {
	quota   quota
	backend error // the counters could not be reached (fail_mode deny)
}

// instanceLimitName is the name APISIX gives the instance in quota headers:
// ai-proxy's is "ai-proxy-<provider>".
func instanceLimitName(inst *Instance) string {
	if inst.Name != "" {
		return inst.Name
	}
	return "ai-proxy-" + inst.ProviderName
}

// limitConfFor is the route's ai-rate-limiting conf, from its ticket; nil
// when the route has none. A header that is not a good ticket is an error.
func (p *Plugin) limitConfFor(r *http.Request) (*LimitConf, error) {
	t := r.Header.Get(LimitHeader)
	if t == "" {
		return nil, nil
	}
	id, err := p.tickets.use(t)
	if err != nil {
		return nil, err
	}
	lc := p.limits.get(id)
	if lc == nil {
		return nil, errBadTicket
	}
	return lc, nil
}

// estimate is what a call may cost before it is made: the prompt at four
// bytes a token of the body sent upstream (an overestimate for JSON, which
// errs on the side of the budget), plus the output it asks to be capped at.
func estimate(lc *LimitConf, inst *Instance, c *call, upstream []byte) int64 {
	prompt := int64(len(upstream)/4) + 1
	var out int64
	// Translated bodies name the limit in their own protocol's field.
	for _, f := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens", "inferenceConfig.maxTokens", "generationConfig.maxOutputTokens"} {
		if n := gjson.GetBytes(upstream, f); n.Type == gjson.Number && n.Num > 0 {
			out = int64(min(n.Num, 1e9))
			break
		}
	}
	switch lc.Strategy {
	case "prompt_tokens":
		return prompt
	case "completion_tokens":
		return max(out, 1)
	case "cost":
		model := inst.RouteModel
		if model == "" {
			model = c.clientModel
		}
		return max(lc.cost(model, providers.Usage{Prompt: prompt, Completion: out}), 1)
	}
	return prompt + out
}

// charge is what a finished call used, in the conf's unit.
func (lc *LimitConf) charge(c *call) int64 {
	u := c.obs.Usage
	switch lc.Strategy {
	case "prompt_tokens":
		return u.Prompt
	case "completion_tokens":
		return u.Completion
	case "cost":
		return lc.price(c)
	}
	if u.Total == 0 {
		return u.Prompt + u.Completion
	}
	return u.Total
}

// price is the finished call's price in millionths. Providers answer
// with a snapshot name (gpt-4o-2024-08-06): the requested model's price,
// which the estimate used, applies when the answered one has none.
func (lc *LimitConf) price(c *call) int64 {
	return lc.cost(c.obs.Model, c.obs.Usage, c.requestModel)
}

// cost is a usage's price in millionths of the prices' currency: prices
// are per million tokens, so the two millions cancel. The first model that
// has a price counts, else "*".
func (lc *LimitConf) cost(model string, u providers.Usage, fallbacks ...string) int64 {
	pr, ok := lc.Prices[model]
	for _, m := range fallbacks {
		if ok {
			break
		}
		pr, ok = lc.Prices[m]
	}
	if !ok {
		pr = lc.Prices["*"]
	}
	cached := min(u.Cached, u.Prompt)
	f := float64(u.Prompt-cached)*pr.Input + float64(cached)*pr.CachedInput + float64(u.Completion)*pr.Output
	return int64(math.Ceil(f))
}

// reserve holds the attempt's estimate against every budget of lc that
// applies to inst. On a refusal nothing stays held.
func (p *Plugin) reserve(r *http.Request, c *call, lc *LimitConf, inst *Instance, est int64) *refusal {
	ctx := r.Context()
	if lc.Redis != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lc.Redis.Timeout)
		defer cancel()
	}
	type want struct {
		b     *budget
		scope string
		key   string
		q     quota
	}
	var wants []want
	name := instanceLimitName(inst)
	route := ""
	if id := lc.routeID.Load(); id != nil {
		route = *id
	}
	if len(lc.Rules) > 0 {
		for i := range lc.Rules {
			rl := &lc.Rules[i]
			key, ok := resolveKey(rl.key, r, route)
			if !ok {
				continue // as in APISIX: a rule whose variables are all empty does not apply
			}
			wants = append(wants, want{&rl.budget, "rule:" + strconv.Itoa(i), key, quota{names: rl.names}})
		}
	} else {
		b, scope := lc.Instances[name], "instance:"+name
		if b == nil {
			b, scope = lc.Global, "global"
		}
		if b != nil {
			wants = append(wants, want{b, scope, "", quota{names: lc.instanceNames(name)}})
		}
	}
	var held []reservation
	giveBack := func() {
		for _, h := range held {
			_ = h.store.Adjust(ctx, h.key, h.window, h.index, -h.held)
		}
	}
	var quotas []quota
	for _, w := range wants {
		key := limit.Key(route, lc.hash, w.scope, w.key)
		res, err := lc.store.Reserve(ctx, key, w.b.Window, w.b.Limit, est)
		if err != nil {
			p.metrics.limitError()
			p.log.Warn("ai-rate-limiting counters unreachable", zap.String("policy", lc.Policy), zap.Error(err))
			if lc.FailAllow {
				continue
			}
			giveBack()
			return &refusal{backend: err}
		}
		q := w.q
		q.limit, q.remaining, q.reset = w.b.Limit, res.Remaining, res.Reset
		if !res.Allowed {
			giveBack()
			q.remaining = 0
			return &refusal{quota: q}
		}
		held = append(held, reservation{lc.store, key, w.b.Window, res.Window, est})
		quotas = append(quotas, q)
	}
	c.reserved, c.quotas = held, quotas
	return nil
}

// settle turns the attempt's reservations into what it used: the real
// usage when the provider reported it, nothing for a failed attempt, the
// estimate for an answer without usage.
func (p *Plugin) settle(c *call, lc *LimitConf, failed bool) {
	if len(c.reserved) == 0 {
		return
	}
	var used int64 = -1
	switch {
	case failed:
		used = 0
	case c.obs.UsageSeen:
		used = lc.charge(c)
	}
	if used >= 0 {
		// Not the request's context: a client that left still used tokens.
		ctx := context.Background()
		if lc.Redis != nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, lc.Redis.Timeout)
			defer cancel()
		}
		for _, h := range c.reserved {
			if d := used - h.held; d != 0 {
				if err := h.store.Adjust(ctx, h.key, h.window, h.index, d); err != nil {
					p.metrics.limitError()
				}
			}
		}
	}
	c.reserved = nil
}

// resolveKey fills a rule key's variables from the request APISIX
// forwarded. ok is false when every variable is empty.
func resolveKey(tmpl string, r *http.Request, route string) (string, bool) {
	resolved := 0
	out := keyVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := strings.Trim(m, "${}")
		v := resolveVar(name, r, route)
		if v != "" {
			resolved++
		}
		return v
	})
	return out, resolved > 0
}

func resolveVar(name string, r *http.Request, route string) string {
	if f := varResolver(name); f != nil {
		return f(r, route)
	}
	return ""
}

// varResolver reads one rule-key variable from the request APISIX
// forwarded to the relay; nil for a variable the relay cannot see. The
// conf check uses it too, so what a conf may name and what resolves stay
// one list.
func varResolver(name string) func(r *http.Request, route string) string {
	switch {
	case name == "remote_addr":
		return func(r *http.Request, _ string) string { return clientIP(r) }
	case name == "consumer_name":
		return func(r *http.Request, _ string) string { return r.Header.Get("X-Consumer-Username") }
	case name == "uri":
		return func(r *http.Request, _ string) string { return r.URL.Path }
	case name == "host":
		return func(r *http.Request, _ string) string { return r.Host }
	case name == "request_method":
		return func(r *http.Request, _ string) string { return r.Method }
	case name == "route_id":
		return func(_ *http.Request, route string) string { return route }
	case strings.HasPrefix(name, "http_"):
		h := strings.ReplaceAll(name[5:], "_", "-")
		return func(r *http.Request, _ string) string { return r.Header.Get(h) }
	case strings.HasPrefix(name, "arg_"):
		return func(r *http.Request, _ string) string { return r.URL.Query().Get(name[4:]) }
	case strings.HasPrefix(name, "cookie_"):
		return func(r *http.Request, _ string) string {
			if ck, err := r.Cookie(name[7:]); err == nil {
				return ck.Value
			}
			return ""
		}
	}
	return nil
}

// setQuotaHeaders writes the quota headers of the budgets an attempt holds.
func setQuotaHeaders(h http.Header, lc *LimitConf, qs []quota) {
	if lc == nil || !lc.ShowHeaders {
		return
	}
	for _, q := range qs {
		h[q.names.limit] = []string{strconv.FormatInt(q.limit, 10)}
		h[q.names.remaining] = []string{strconv.FormatInt(q.remaining, 10)}
		h[q.names.reset] = []string{strconv.FormatInt(int64(math.Ceil(q.reset.Seconds())), 10)}
	}
}

// refuse answers a call the budgets did not admit: rejected_code with
// APISIX's {"error_msg": …} and the OpenAI-shaped error in one body.
func (p *Plugin) refuse(w http.ResponseWriter, c *call, lc *LimitConf, rf *refusal) {
	p.metrics.limitRejected()
	h := w.Header()
	if rf.backend != nil {
		h.Set("Retry-After", "1")
		c.fail(w, http.StatusServiceUnavailable, "rate_limiter_unavailable", "the rate-limit counters cannot be reached (fail_mode deny)")
		return
	}
	setQuotaHeaders(h, lc, []quota{rf.quota})
	h.Set("Retry-After", strconv.FormatInt(max(int64(math.Ceil(rf.quota.reset.Seconds())), 1), 10))
	msg := lc.RejectedMsg
	if msg == "" {
		msg = "token budget of this route is spent; retry after the window resets"
	}
	c.status, c.errKind, c.errMsg = lc.RejectedCode, "rate_limited", msg
	h.Set("Content-Type", "application/json")
	h.Set(HeaderCallID, c.id)
	setInstanceHeaders(h, c)
	b, _ := json.Marshal(struct {
		Error    errorDetail `json:"error"`
		ErrorMsg string      `json:"error_msg"`
	}{newErrorDetail(msg, "rate_limited", ""), msg})
	w.WriteHeader(lc.RejectedCode)
	_, _ = w.Write(b)
}

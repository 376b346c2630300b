// Package aiproxy is the ai-proxy ext plugin: the pre-req filter that APISIX
// calls over the plugin-runner protocol, and the relay that APISIX then
// proxies the request to. The relay serves ai-proxy-multi routes too
// (package aiproxymulti): their confs share ai-proxy's instance schema, and
// the relay makes their attempts.
package aiproxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// Name is the plugin name routes use in their ext-plugin-pre-req conf.
const Name = "ai-proxy"

// Plugin is the ai-proxy plugin and its relay; they share the confs and
// the ticket key, so both live in one value.
type Plugin struct {
	plugin.DefaultPlugin

	log     *zap.Logger
	calls   *zap.Logger
	metrics *Metrics
	tickets *tickets
	confs   *confRegistry[*Conf]
	limits  *confRegistry[*LimitConf]
	// counters are the local policy's; redises the redis policy's clients.
	counters   limit.Store
	redises    *limit.Redises
	transports *transports
	callIDs    *callIDs
	bodies     byteBudget
	// health is shared by every ai-proxy-multi conf: one breaker per
	// upstream identity in the whole process.
	health *balance.Registry
}

// Options are the plugin's outputs.
type Options struct {
	// Log receives diagnostics: conf errors, failed calls.
	Log *zap.Logger
	// Calls receives one line per relayed call; nil = Log at info level.
	Calls *zap.Logger
	// Metrics, when set, counts calls, tokens and latencies.
	Metrics *Metrics
	// MaxBodyBytesInFlight bounds the request bytes all calls hold at once
	// (503 runner_busy beyond); 0 = unbounded.
	MaxBodyBytesInFlight int64
}

// New makes the plugin.
func New(o Options) *Plugin {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Calls == nil {
		o.Calls = o.Log
	}
	p := &Plugin{
		log:        o.Log,
		calls:      o.Calls,
		metrics:    o.Metrics,
		tickets:    newTickets(),
		confs:      newConfRegistry[*Conf](ticketTTL),
		limits:     newConfRegistry[*LimitConf](ticketTTL),
		counters:   limit.NewLocal(0),
		redises:    limit.NewRedises(),
		transports: newTransports(),
		callIDs:    newCallIDs(),
		bodies:     byteBudget{limit: o.MaxBodyBytesInFlight},
		health:     balance.NewRegistry(),
	}
	if o.Metrics != nil {
		o.Metrics.states = p.instanceStates
	}
	return p
}

// Name implements plugin.Plugin.
func (p *Plugin) Name() string { return Name }

// ParseConf implements plugin.Plugin. It never returns an error: the runner
// skips a plugin whose conf fails to parse and lets the request through
// unproxied, so an invalid conf is returned as a Conf that answers every
// request of its route with the error instead.
func (p *Plugin) ParseConf(in []byte) (any, error) {
	return p.checked(ParseConf(in)), nil
}

// ParseMultiConf parses an ai-proxy-multi conf for the relay.
func (p *Plugin) ParseMultiConf(in []byte) *Conf {
	c := p.checked(ParseMultiConf(in, p.health))
	if c.Err == nil && len(gjson.GetBytes(in, "instances.#.checks").Array()) > 0 {
		p.log.Warn("ai-proxy-multi: instances[].checks (active health checks) are accepted but not run; " +
			"the runner's passive breaker skips an instance from its first failure until its trial call succeeds")
	}
	return c
}

func (p *Plugin) checked(c *Conf) *Conf {
	if c.Err != nil {
		// The conf holds credentials: log the field, never the value.
		p.log.Warn("invalid "+c.Plugin+" conf", zap.String("field", c.Err.Field), zap.String("error", c.Err.Msg))
	}
	return c
}

// RequestFilter implements plugin.Plugin: a valid conf sends the request on
// to the relay with a ticket naming that conf; an invalid one stops it.
func (p *Plugin) RequestFilter(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	p.Filter(conf, w, r)
}

// Filter is the pre-req filter of both plugins.
func (p *Plugin) Filter(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	c, ok := conf.(*Conf)
	if !ok || c.Err != nil {
		if !ok {
			invalidConf(w, "", nil)
		} else {
			invalidConf(w, c.Plugin, c.Err)
		}
		return
	}
	rememberRoute(&c.routeID, r)
	p.confs.put(c)
	if c.Hash != nil && c.Hash.fromVars() {
		// Variables live in APISIX: ask for them here. A value the client
		// sent is replaced either way.
		key := "-"
		if s := varsText(c.Hash, r); s != "" {
			key = strconv.FormatUint(balance.HashKey(s), 16)
		}
		r.Header().Set(HashHeader, key)
	}
	r.Header().Set(TicketHeader, p.tickets.mint(c.ID))
}

// varsText is the chash text of a vars or vars_combinations key: one
// round trip to APISIX per variable. "" when every variable is empty.
func varsText(h *HashKey, r pkgHTTP.Request) string {
	names := h.vars
	if h.On == "vars" {
		names = []string{h.Key}
	}
	var b strings.Builder
	empty := true
	for _, name := range names {
		v, err := r.Var(name)
		if err == nil && len(v) > 0 {
			empty = false
			b.Write(v)
		}
		b.WriteByte(0)
	}
	if empty {
		return ""
	}
	return b.String()
}

// ParseLimitConf parses an ai-rate-limiting conf for the relay.
func (p *Plugin) ParseLimitConf(in []byte) *LimitConf {
	c := ParseLimitConf(in, p.counters, p.redises)
	if c.Err != nil {
		p.log.Warn("invalid "+LimitName+" conf", zap.String("field", c.Err.Field), zap.String("error", c.Err.Msg))
	}
	return c
}

// FilterLimit is ai-rate-limiting's pre-req filter: it hands the route's
// budgets to the relay with a ticket. The budgets are checked in the relay,
// which knows the instance, the body and, after the call, the usage.
func (p *Plugin) FilterLimit(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	c, ok := conf.(*LimitConf)
	if !ok || c.Err != nil {
		var err *providers.ConfError
		if ok {
			err = c.Err
		}
		invalidConf(w, LimitName, err)
		return
	}
	rememberRoute(&c.routeID, r)
	p.limits.put(c)
	r.Header().Set(LimitHeader, p.tickets.mint(c.ID))
}

// invalidConf stops a request whose route conf is invalid: a 500 naming
// the field (never its value). err is nil when the conf is not even ours.
func invalidConf(w http.ResponseWriter, plugin string, err *providers.ConfError) {
	msg, param := "conf is invalid", ""
	if plugin != "" {
		msg = plugin + " " + msg
	}
	if err != nil {
		msg, param = "invalid "+plugin+" conf: "+err.Error(), err.Field
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(errorBody(msg, "invalid_conf", param))
}

// rememberRoute asks APISIX for the route id once per conf token (one
// ExtraInfo round trip), not per request; the call log names the route.
func rememberRoute(slot *atomic.Pointer[string], r pkgHTTP.Request) {
	if slot.Load() != nil {
		return
	}
	if id, err := r.Var("route_id"); err == nil {
		s := string(id)
		slot.Store(&s)
	}
}

// instanceStates walks the ai-proxy-multi instances of the live confs, the
// newest conf of a route first, each (route, instance) once.
func (p *Plugin) instanceStates(f func(route, instance string, s balance.State)) {
	type live struct {
		conf *Conf
		used time.Time
	}
	var confs []live
	p.confs.mu.RLock()
	for _, e := range p.confs.entries {
		if e.conf.Pool != nil {
			confs = append(confs, live{e.conf, e.lastUsed})
		}
	}
	p.confs.mu.RUnlock()
	sort.Slice(confs, func(i, j int) bool { return confs[i].used.After(confs[j].used) })
	seen := map[[2]string]bool{}
	now := time.Now()
	for _, l := range confs {
		route := ""
		if id := l.conf.routeID.Load(); id != nil {
			route = *id
		}
		for _, inst := range l.conf.Instances {
			k := [2]string{route, inst.Name}
			if !seen[k] {
				seen[k] = true
				f(route, inst.Name, inst.health.State(now))
			}
		}
	}
}

// Owns says whether r carries a ticket this process minted for a conf it
// still has. During `apisix reload` two runners serve one relay port, and
// each hands the other's calls over.
func (p *Plugin) Owns(r *http.Request) bool {
	id, err := p.tickets.verify(r.Header.Get(TicketHeader))
	return err == nil && p.confs.get(id) != nil
}

// errorBody is the OpenAI-shaped error every client-facing failure uses.
func errorBody(msg, code, param string) []byte {
	b, _ := json.Marshal(map[string]errorDetail{"error": newErrorDetail(msg, code, param)})
	return b
}

// errorDetail is the "error" object of errorBody.
type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Param   *string `json:"param"`
}

func newErrorDetail(msg, code, param string) errorDetail {
	d := errorDetail{Message: msg, Type: "ai_proxy_error", Code: code}
	if param != "" {
		d.Param = &param
	}
	return d
}

// identified is a parsed conf a ticket can name.
type identified interface {
	comparable
	id() confID
}

func (c *Conf) id() confID { return c.ID }

// confRegistry lets the relay find the conf a ticket names. Entries live as
// long as tickets for them may still arrive; route edits leave old confs
// behind, so unused ones are dropped.
type confRegistry[T identified] struct {
	mu      sync.RWMutex
	entries map[confID]*confEntry[T]
	keep    time.Duration
	swept   time.Time
}

type confEntry[T identified] struct {
	conf     T
	lastUsed time.Time
}

func newConfRegistry[T identified](keep time.Duration) *confRegistry[T] {
	return &confRegistry[T]{entries: map[confID]*confEntry[T]{}, keep: keep, swept: time.Now()}
}

func (r *confRegistry[T]) put(c T) {
	now := time.Now()
	r.mu.RLock()
	e, ok := r.entries[c.id()]
	fresh := ok && now.Sub(e.lastUsed) < time.Second
	r.mu.RUnlock()
	if fresh {
		return // touched within the second: skip the write lock on the hot path
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[c.id()] = &confEntry[T]{conf: c, lastUsed: now}
	if now.Sub(r.swept) > r.keep {
		for id, e := range r.entries {
			if now.Sub(e.lastUsed) > r.keep+time.Second {
				delete(r.entries, id)
			}
		}
		r.swept = now
	}
}

func (r *confRegistry[T]) get(id confID) T {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.entries[id]; ok {
		return e.conf
	}
	var none T
	return none
}

// Close releases idle upstream connections; call it after the relay stopped.
func (p *Plugin) Close() {
	p.transports.closeIdle()
	p.redises.Close()
}

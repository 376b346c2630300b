package aiproxy

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// Metrics are the relay's Prometheus series. A nil *Metrics records nothing.
type Metrics struct {
	models   modelLabels
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	ttft     *prometheus.HistogramVec
	duration *prometheus.HistogramVec
	streams  prometheus.Gauge
	attempts *prometheus.CounterVec
	// ai-rate-limiting: calls refused, counter stores unreachable, spend.
	limitRejections prometheus.Counter
	limitErrors     prometheus.Counter
	cost            *prometheus.CounterVec
	// instanceNames bounds the instance label as models bounds model.
	instanceNames modelLabels
	stateDesc     *prometheus.Desc
	// states walks the live ai-proxy-multi instances (set by the plugin).
	states func(func(route, instance string, s balance.State))
}

// instanceStates is the breaker-state gauge, read from the live confs at
// scrape time so it is never stale and holds only configured instances.
type instanceStates struct{ m *Metrics }

func (c instanceStates) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.stateDesc }

func (c instanceStates) Collect(ch chan<- prometheus.Metric) {
	if c.m.states == nil {
		return
	}
	c.m.states(func(route, instance string, s balance.State) {
		for _, st := range []balance.State{balance.Healthy, balance.Cooling, balance.Trial} {
			v := 0.0
			if st == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.m.stateDesc, prometheus.GaugeValue, v, route, instance, st.String())
		}
	})
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	latency := []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ai_proxy_requests_total", Help: "Relayed LLM calls by provider, model and HTTP status.",
		}, []string{"provider", "model", "status"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ai_proxy_tokens_total", Help: "Tokens the providers reported, by kind (prompt, completion, total).",
		}, []string{"provider", "model", "kind"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ai_proxy_time_to_first_token_seconds", Help: "From sending upstream to the first byte (streams: the first event).", Buckets: latency,
		}, []string{"provider", "stream"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ai_proxy_request_duration_seconds", Help: "Whole relayed calls.", Buckets: latency,
		}, []string{"provider", "stream"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ai_proxy_streams_in_flight", Help: "Streams being relayed now.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ai_proxy_instance_attempts_total", Help: "ai-proxy-multi attempts by instance and result (ok, or why it failed).",
		}, []string{"instance", "provider", "result"}),
	}
	m.limitRejections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ai_proxy_ratelimit_rejections_total", Help: "Calls ai-rate-limiting refused (budget spent, or counters unreachable with fail_mode deny).",
	})
	m.limitErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ai_proxy_ratelimit_store_errors_total", Help: "ai-rate-limiting counter operations that failed (Redis down or slow, local store full).",
	})
	m.cost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ai_proxy_cost_total", Help: "Spend of priced calls, by ai-rate-limiting prices, in their currency.",
	}, []string{"provider", "model"})
	reg.MustRegister(m.limitRejections, m.limitErrors, m.cost)
	m.stateDesc = prometheus.NewDesc("ai_proxy_instance_state",
		"ai-proxy-multi instance breaker state: 1 for the state it is in (healthy, cooling, trial).",
		[]string{"route", "instance", "state"}, nil)
	reg.MustRegister(m.requests, m.tokens, m.ttft, m.duration, m.streams, m.attempts, instanceStates{m},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ai_proxy_gcp_token_fetches_total", Help: "Access-token requests to Google token endpoints.",
		}, func() float64 { f, _ := providers.TokenFetches(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ai_proxy_gcp_token_failures_total", Help: "Access-token requests that failed.",
		}, func() float64 { _, f := providers.TokenFetches(); return float64(f) }),
	)
	return m
}

// attempt counts one ai-proxy-multi attempt.
func (m *Metrics) attempt(c *call, a *attemptLog) {
	if m == nil || a.instance == "" {
		return
	}
	result := a.reason
	if result == "" {
		result = "ok"
	} else if i := strings.IndexByte(result, ' '); i > 0 {
		result = result[:i] // drop the note on why it did not move on
	}
	m.attempts.WithLabelValues(m.instanceNames.bound(a.instance), c.provider, result).Inc()
}

func (m *Metrics) limitRejected() {
	if m != nil {
		m.limitRejections.Inc()
	}
}

func (m *Metrics) limitError() {
	if m != nil {
		m.limitErrors.Inc()
	}
}

func (m *Metrics) streamStarted() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *Metrics) streamEnded() {
	if m != nil {
		m.streams.Dec()
	}
}

// observe records a finished call; calls refused before a conf was known
// (bad tickets) are not LLM calls and are not counted.
func (m *Metrics) observe(c *call) {
	if m == nil || c.conf == nil {
		return
	}
	model := m.models.label(c)
	stream := strconv.FormatBool(c.stream)
	m.requests.WithLabelValues(c.provider, model, strconv.Itoa(c.status)).Inc()
	if c.obs.UsageSeen {
		u := c.obs.Usage
		m.tokens.WithLabelValues(c.provider, model, "prompt").Add(float64(u.Prompt))
		m.tokens.WithLabelValues(c.provider, model, "completion").Add(float64(u.Completion))
		m.tokens.WithLabelValues(c.provider, model, "total").Add(float64(u.Total))
	}
	if c.cost > 0 {
		m.cost.WithLabelValues(c.provider, model).Add(float64(c.cost) / 1e6)
	}
	if c.ttft > 0 {
		m.ttft.WithLabelValues(c.provider, stream).Observe(c.ttft.Seconds())
	}
	m.duration.WithLabelValues(c.provider, stream).Observe(time.Since(c.start).Seconds())
}

// Model labels never come from the client: the provider's answer names the
// model, else the route forces one; anything else is "unknown". A hostile
// provider is bounded too: labels are cut to maxModelLabel bytes and past
// maxModels distinct ones become "other".
const (
	maxModelLabel = 64
	maxModels     = 200
)

type modelLabels struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (l *modelLabels) label(c *call) string {
	model := c.obs.Model
	if model == "" && c.inst != nil {
		model = c.inst.RouteModel
	}
	if model == "" {
		return "unknown"
	}
	return l.bound(model)
}

// bound returns s as a label: cut to maxModelLabel bytes, and "other" once
// maxModels distinct ones are in use.
func (l *modelLabels) bound(s string) string {
	if len(s) > maxModelLabel {
		s = strings.ToValidUTF8(s[:maxModelLabel], "")
	}
	model := s
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if !l.seen[model] {
		if len(l.seen) >= maxModels {
			return "other"
		}
		l.seen[model] = true
	}
	return model
}

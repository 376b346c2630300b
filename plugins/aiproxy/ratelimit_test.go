package aiproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// mustLimitConf parses a valid ai-rate-limiting conf on a fresh local store.
func mustLimitConf(t *testing.T, conf string) *LimitConf {
	t.Helper()
	c := ParseLimitConf([]byte(conf), limit.NewLocal(0), nil)
	if c.Err != nil {
		t.Fatalf("conf %s: %v", conf, c.Err)
	}
	return c
}

// bodyOfLen is a chat body of exactly n bytes with the given extra
// top-level fields (`"max_tokens":100,` …).
func bodyOfLen(t *testing.T, n int, extra string) []byte {
	t.Helper()
	head := `{"model":"m",` + extra + `"messages":[{"role":"user","content":"`
	tail := `"}]}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("body of %d bytes cannot hold %q", n, extra)
	}
	return []byte(head + strings.Repeat("x", pad) + tail)
}

const testPrices = `"prices":{"gpt-4o":{"input":2.5,"cached_input":1.25,"output":10},"gpt-4o-mini":{"input":0.15,"output":0.6},"*":{"input":1,"output":2}}`

func TestEstimate(t *testing.T) {
	const n = 399 // prompt = 399/4 + 1 = 100
	tests := []struct {
		name     string
		strategy string
		extra    string
		inst     Instance
		client   string // the client's model
		want     int64
	}{
		{"total without cap", "total_tokens", "", Instance{}, "", 100},
		{"total with max_tokens", "total_tokens", `"max_tokens":200,`, Instance{}, "", 300},
		{"total with max_completion_tokens", "total_tokens", `"max_completion_tokens":50,`, Instance{}, "", 150},
		{"total with max_output_tokens", "total_tokens", `"max_output_tokens":7,`, Instance{}, "", 107},
		{"max_tokens first", "total_tokens", `"max_output_tokens":7,"max_completion_tokens":50,"max_tokens":200,`, Instance{}, "", 300},
		{"max_tokens 0 falls to the next", "total_tokens", `"max_tokens":0,"max_completion_tokens":50,`, Instance{}, "", 150},
		{"negative cap ignored", "total_tokens", `"max_tokens":-5,`, Instance{}, "", 100},
		{"string cap ignored", "total_tokens", `"max_tokens":"200",`, Instance{}, "", 100},
		{"huge cap bounded", "total_tokens", `"max_tokens":1e15,`, Instance{}, "", 100 + 1e9},
		{"prompt ignores the cap", "prompt_tokens", `"max_tokens":200,`, Instance{}, "", 100},
		{"completion is the cap", "completion_tokens", `"max_tokens":200,`, Instance{}, "", 200},
		{"completion at least 1", "completion_tokens", "", Instance{}, "", 1},
		// cost: 100 prompt tokens and the cap, at the model's prices.
		{"cost: route model", "cost", `"max_tokens":200,`, Instance{RouteModel: "gpt-4o"}, "gpt-4o-mini", 100*2.5 + 200*10},
		{"cost: client model", "cost", `"max_tokens":200,`, Instance{}, "gpt-4o-mini", 135}, // 15 + 120
		{"cost: any other model", "cost", `"max_tokens":200,`, Instance{}, "llama", 100*1 + 200*2},
		{"cost: no model", "cost", "", Instance{}, "", 100},
		{"cost: unknown route model", "cost", "", Instance{RouteModel: "o3"}, "gpt-4o", 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := `{"limit":1000,"time_window":60,"limit_strategy":"` + tt.strategy + `"`
			if tt.strategy == "cost" {
				conf += "," + testPrices
			}
			lc := mustLimitConf(t, conf+"}")
			body := bodyOfLen(t, n, tt.extra)
			if got := estimate(lc, &tt.inst, &call{clientModel: tt.client}, body); got != tt.want {
				t.Fatalf("estimate = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEstimatePromptGrowsWithTheBody(t *testing.T) {
	lc := mustLimitConf(t, `{"limit":1000,"time_window":60,"limit_strategy":"prompt_tokens"}`)
	for _, n := range []int{0, 3, 4, 7, 8, 4000, 1 << 20} {
		body := make([]byte, n)
		if got, want := estimate(lc, &Instance{}, &call{}, body), int64(n/4+1); got != want {
			t.Fatalf("estimate of %d bytes = %d, want %d", n, got, want)
		}
	}
}

func TestEstimateCostAtLeastOne(t *testing.T) {
	lc := mustLimitConf(t, `{"limit":1000,"time_window":60,"limit_strategy":"cost","prices":{"free":{"input":0,"output":0}}}`)
	if got := estimate(lc, &Instance{RouteModel: "free"}, &call{}, []byte(`{"max_tokens":100}`)); got != 1 {
		t.Fatalf("estimate of a free model = %d, want 1", got)
	}
}

func TestCharge(t *testing.T) {
	usage := providers.Usage{Prompt: 1000, Completion: 200, Total: 1250, Cached: 400}
	tests := []struct {
		name     string
		strategy string
		obs      providers.Observation
		reqModel string
		want     int64
	}{
		{"total", "total_tokens", providers.Observation{Usage: usage}, "", 1250},
		{"total falls back to prompt+completion", "total_tokens", providers.Observation{Usage: providers.Usage{Prompt: 10, Completion: 5}}, "", 15},
		{"total of nothing", "total_tokens", providers.Observation{}, "", 0},
		{"prompt", "prompt_tokens", providers.Observation{Usage: usage}, "", 1000},
		{"completion", "completion_tokens", providers.Observation{Usage: usage}, "", 200},
		{"completion of nothing", "completion_tokens", providers.Observation{Usage: providers.Usage{Prompt: 10}}, "", 0},
		// 600 uncached at 2.5, 400 cached at 1.25, 200 out at 10.
		{"cost: answered model", "cost", providers.Observation{Model: "gpt-4o", Usage: usage}, "gpt-4o-mini", 1500 + 500 + 2000},
		{"cost: requested model", "cost", providers.Observation{Usage: usage}, "gpt-4o", 4000},
		// gpt-4o-mini's cached_input defaults to its input: 1000 at 0.15, 200 at 0.6.
		{"cost: cached at input", "cost", providers.Observation{Model: "gpt-4o-mini", Usage: usage}, "", 150 + 120},
		{"cost: any other model", "cost", providers.Observation{Model: "llama", Usage: usage}, "", 1000 + 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := `{"limit":1000,"time_window":60,"limit_strategy":"` + tt.strategy + `"`
			if tt.strategy == "cost" {
				conf += "," + testPrices
			}
			lc := mustLimitConf(t, conf+"}")
			c := &call{obs: tt.obs, requestModel: tt.reqModel}
			c.obs.UsageSeen = true
			if got := lc.charge(c); got != tt.want {
				t.Fatalf("charge = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCost(t *testing.T) {
	lc := mustLimitConf(t, `{"limit":1,"time_window":60,"limit_strategy":"cost","prices":{
		"full":{"input":2.5,"cached_input":1.25,"output":10},
		"nocache":{"input":3,"output":15},
		"freecache":{"input":3,"cached_input":0,"output":15},
		"half":{"input":0.5}}}`)
	tests := []struct {
		name  string
		model string
		u     providers.Usage
		want  int64
	}{
		{"nothing", "full", providers.Usage{}, 0},
		{"input only", "full", providers.Usage{Prompt: 1000}, 2500},
		{"output only", "full", providers.Usage{Completion: 3}, 30},
		{"cached at cached_input", "full", providers.Usage{Prompt: 1000, Cached: 400, Completion: 200}, 1500 + 500 + 2000},
		{"all cached", "full", providers.Usage{Prompt: 1000, Cached: 1000}, 1250},
		{"cached above prompt counts as prompt", "full", providers.Usage{Prompt: 100, Cached: 500}, 125},
		{"cached_input defaults to input", "nocache", providers.Usage{Prompt: 1000, Cached: 400, Completion: 100}, 3000 + 1500},
		{"cached_input 0 is free", "freecache", providers.Usage{Prompt: 1000, Cached: 400}, 1800},
		{"rounded up", "half", providers.Usage{Prompt: 1}, 1},
		{"rounded up, many", "half", providers.Usage{Prompt: 3, Completion: 1000}, 2},
		{"reasoning is in completion, not extra", "full", providers.Usage{Completion: 10, Reasoning: 5}, 100},
		{"unpriced model, no \"*\"", "other", providers.Usage{Prompt: 1000, Completion: 1000}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lc.cost(tt.model, tt.u); got != tt.want {
				t.Fatalf("cost(%s, %+v) = %d, want %d", tt.model, tt.u, got, tt.want)
			}
		})
	}
}

func keyRequest(t *testing.T, mutate func(r *http.Request)) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://api.example/v1/chat/completions?tenant=acme&empty=&multi=1&multi=2", nil)
	r.Header.Set("X-User", "alice")
	r.Header.Set("X-Team", "red")
	r.Header.Set("X-User-Id", "42")
	r.Header.Set("X-Real-Ip", "203.0.113.7")
	r.Header.Set("X-Consumer-Username", "bob")
	r.AddCookie(&http.Cookie{Name: "session", Value: "s1"})
	if mutate != nil {
		mutate(r)
	}
	return r
}

func TestResolveKey(t *testing.T) {
	tests := []struct {
		name   string
		tmpl   string
		mutate func(r *http.Request)
		want   string
		wantOK bool
	}{
		{"header", "$http_x_user", nil, "alice", true},
		{"header with underscores", "$http_x_user_id", nil, "42", true},
		{"braced header", "${http_x_user}", nil, "alice", true},
		{"braced next to text", "${http_x_user}suffix", nil, "alicesuffix", true},
		{"text around", "user:$http_x_user!", nil, "user:alice!", true},
		{"combined", "$consumer_name $http_x_team", nil, "bob red", true},
		{"combined braced", "${consumer_name}/${http_x_team}", nil, "bob/red", true},
		{"arg", "$arg_tenant", nil, "acme", true},
		{"repeated arg: the first", "$arg_multi", nil, "1", true},
		{"cookie", "$cookie_session", nil, "s1", true},
		{"remote_addr from X-Real-Ip", "$remote_addr", nil, "203.0.113.7", true},
		{"remote_addr without X-Real-Ip", "$remote_addr", func(r *http.Request) { r.Header.Del("X-Real-Ip") }, "192.0.2.1", true},
		{"consumer_name", "$consumer_name", nil, "bob", true},
		{"uri", "$uri", nil, "/v1/chat/completions", true},
		{"host", "$host", nil, "api.example", true},
		{"request_method", "$request_method", nil, "POST", true},
		{"route_id", "$route_id", nil, "route-1", true},
		{"one of two empty", "$http_x_missing-$http_x_user", nil, "-alice", true},
		{"header missing", "$http_x_missing", nil, "", false},
		{"all missing", "$http_x_missing $arg_nope $cookie_nope", nil, "  ", false},
		{"empty arg", "$arg_empty", nil, "", false},
		{"no consumer", "$consumer_name", func(r *http.Request) { r.Header.Del("X-Consumer-Username") }, "", false},
		{"unknown variable", "$upstream_addr", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := resolveKey(tt.tmpl, keyRequest(t, tt.mutate), "route-1")
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("resolveKey(%q) = %q, %v; want %q, %v", tt.tmpl, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// Every variable the conf check accepts (varResolver) must resolve from the
// request the relay gets, or a rule on it never applies: $server_port does
// not reach the relay, so a rule on it is refused.
func TestRuleOnUnseenVariableRefused(t *testing.T) {
	c := ParseLimitConf([]byte(`{"rules":[{"count":10,"time_window":60,"key":"$server_port"}]}`), nil, nil)
	if c.Err == nil || c.Err.Field != "rules[0].key" {
		t.Fatalf("err = %v, want one naming rules[0].key", c.Err)
	}
}

// failingStore is a counter store that cannot be reached.
type failingStore struct{}

var errStoreDown = errors.New("store down")

func (failingStore) Reserve(context.Context, string, time.Duration, int64, int64) (limit.Result, error) {
	return limit.Result{}, errStoreDown
}
func (failingStore) Adjust(context.Context, string, time.Duration, int64, int64) error {
	return errStoreDown
}

// remaining reads a budget's counter without changing it.
func remaining(t *testing.T, lc *LimitConf, key string, b *budget) int64 {
	t.Helper()
	res, err := lc.store.Reserve(context.Background(), key, b.Window, b.Limit, 0)
	if err != nil {
		t.Fatal(err)
	}
	return res.Remaining
}

func TestReserveAndSettle(t *testing.T) {
	tests := []struct {
		name      string
		failed    bool
		obs       providers.Observation
		wantSpent int64 // what the counter keeps of the estimate of 60
	}{
		{"usage reported", false, providers.Observation{UsageSeen: true, Usage: providers.Usage{Prompt: 20, Completion: 10, Total: 30}}, 30},
		{"usage above the estimate", false, providers.Observation{UsageSeen: true, Usage: providers.Usage{Total: 90}}, 90},
		{"usage of zero", false, providers.Observation{UsageSeen: true}, 0},
		{"no usage keeps the estimate", false, providers.Observation{}, 60},
		{"failed attempt gives all back", true, providers.Observation{UsageSeen: true, Usage: providers.Usage{Total: 30}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Plugin{log: zap.NewNop()}
			lc := mustLimitConf(t, `{"limit":100,"time_window":60}`)
			inst := &Instance{ProviderName: "openai"}
			r := keyRequest(t, nil)
			c := &call{}
			if rf := p.reserve(r, c, lc, inst, 60); rf != nil {
				t.Fatalf("refused: %+v", rf)
			}
			if len(c.reserved) != 1 || c.reserved[0].held != 60 || len(c.quotas) != 1 {
				t.Fatalf("reserved %+v quotas %+v", c.reserved, c.quotas)
			}
			q := c.quotas[0]
			if q.limit != 100 || q.remaining != 40 || q.reset <= 0 || q.reset > time.Minute {
				t.Fatalf("quota %+v", q)
			}
			h := quotaHeaders(t, q)
			reset, err := strconv.Atoi(h.Get("X-AI-RateLimit-Reset-ai-proxy-openai"))
			if h.Get("X-AI-RateLimit-Limit-ai-proxy-openai") != "100" || h.Get("X-AI-RateLimit-Remaining-ai-proxy-openai") != "40" ||
				err != nil || reset < 1 || reset > 60 || len(h) != 3 {
				t.Fatalf("quota headers %v", h)
			}
			key := c.reserved[0].key
			if key != limit.Key("", lc.hash, "global", "") {
				t.Fatalf("counter key %q", key)
			}
			// While held, a second call that does not fit is refused and holds nothing.
			c2 := &call{}
			rf := p.reserve(r, c2, lc, inst, 41)
			if rf == nil || rf.backend != nil || rf.quota.remaining != 0 || rf.quota.limit != 100 || c2.reserved != nil {
				t.Fatalf("second call: refusal %+v reserved %+v", rf, c2.reserved)
			}
			c.obs = tt.obs
			p.settle(c, lc, tt.failed)
			if c.reserved != nil {
				t.Fatal("settle left reservations")
			}
			if got := remaining(t, lc, key, lc.Global); got != 100-tt.wantSpent {
				t.Fatalf("remaining %d after settling, want %d", got, 100-tt.wantSpent)
			}
			p.settle(c, lc, tt.failed) // a second settle changes nothing
			if got := remaining(t, lc, key, lc.Global); got != 100-tt.wantSpent {
				t.Fatalf("remaining %d after settling twice, want %d", got, 100-tt.wantSpent)
			}
		})
	}
}

func TestReserveBudgets(t *testing.T) {
	p := &Plugin{log: zap.NewNop()}
	lc := mustLimitConf(t, `{"limit":100,"time_window":60,"instances":[{"name":"small","limit":10,"time_window":60}]}`)
	r := keyRequest(t, nil)
	// The instance's own budget, not the route's.
	if rf := p.reserve(r, &call{}, lc, &Instance{Name: "small", ProviderName: "openai"}, 11); rf == nil || quotaHeaders(t, rf.quota).Get("X-AI-RateLimit-Limit-small") != "10" {
		t.Fatalf("instance over its budget: %+v", rf)
	}
	c := &call{}
	if rf := p.reserve(r, c, lc, &Instance{Name: "small"}, 10); rf != nil || len(c.reserved) != 1 {
		t.Fatalf("instance within its budget: %+v", rf)
	}
	// Another instance falls back to the route's budget.
	c = &call{}
	if rf := p.reserve(r, c, lc, &Instance{Name: "big"}, 100); rf != nil || quotaHeaders(t, c.quotas[0]).Get("X-AI-RateLimit-Limit-big") != "100" {
		t.Fatalf("other instance: %+v quotas %+v", rf, c.quotas)
	}

	// Instances only: an instance without a budget is not limited.
	lc = mustLimitConf(t, `{"instances":[{"name":"small","limit":10,"time_window":60}]}`)
	c = &call{}
	if rf := p.reserve(r, c, lc, &Instance{Name: "other"}, 1000); rf != nil || len(c.reserved) != 0 {
		t.Fatalf("unlimited instance: %+v reserved %+v", rf, c.reserved)
	}
}

func TestReserveRules(t *testing.T) {
	p := &Plugin{log: zap.NewNop()}
	lc := mustLimitConf(t, `{"rules":[
		{"key":"$http_x_user","count":100,"time_window":60,"header_prefix":"user"},
		{"key":"$http_x_team","count":10,"time_window":60}]}`)
	inst := &Instance{ProviderName: "openai"}
	userKey := limit.Key("", lc.hash, "rule:0", "alice")

	// Only the rules whose variables resolve apply.
	noTeam := keyRequest(t, func(r *http.Request) { r.Header.Del("X-Team") })
	c := &call{}
	if rf := p.reserve(noTeam, c, lc, inst, 50); rf != nil || len(c.reserved) != 1 || c.reserved[0].key != userKey {
		t.Fatalf("user rule only: %+v reserved %+v", rf, c.reserved)
	}
	if h := quotaHeaders(t, c.quotas[0]); h.Get("X-AI-user-RateLimit-Limit") != "100" || h.Get("X-AI-user-RateLimit-Remaining") != "50" {
		t.Fatalf("quota headers %v", h)
	}
	p.settle(c, lc, true)

	// A refusal by a later rule gives back what the earlier ones held.
	rf := p.reserve(keyRequest(t, nil), &call{}, lc, inst, 20)
	if rf == nil || quotaHeaders(t, rf.quota).Get("X-AI-2-RateLimit-Limit") != "10" || rf.quota.remaining != 0 {
		t.Fatalf("team rule refusal: %+v", rf)
	}
	if got := remaining(t, lc, userKey, &lc.Rules[0].budget); got != 100 {
		t.Fatalf("user rule keeps %d after the team rule refused, want all 100 back", 100-got)
	}

	// No rule applies: nothing is held, nothing refused.
	none := keyRequest(t, func(r *http.Request) { r.Header.Del("X-User"); r.Header.Del("X-Team") })
	c = &call{}
	if rf := p.reserve(none, c, lc, inst, 1e6); rf != nil || len(c.reserved) != 0 {
		t.Fatalf("no rule: %+v reserved %+v", rf, c.reserved)
	}
}

func TestReserveStoreDown(t *testing.T) {
	for _, allow := range []bool{false, true} {
		conf := `{"limit":100,"time_window":60,"allow_degradation":false}`
		if allow {
			conf = `{"limit":100,"time_window":60,"fail_mode":"allow"}`
		}
		lc := mustLimitConf(t, conf)
		lc.store = failingStore{}
		p := &Plugin{log: zap.NewNop()}
		c := &call{}
		rf := p.reserve(keyRequest(t, nil), c, lc, &Instance{ProviderName: "openai"}, 10)
		switch {
		case allow && rf != nil:
			t.Fatalf("fail_mode allow refused: %+v", rf)
		case !allow && (rf == nil || !errors.Is(rf.backend, errStoreDown)):
			t.Fatalf("fail_mode deny: refusal %+v", rf)
		case len(c.reserved) != 0:
			t.Fatalf("reserved %+v with the store down", c.reserved)
		}
	}
}

// quotaHeaders are the response headers of one quota, as a route that
// shows them writes them.
func quotaHeaders(t *testing.T, q quota) http.Header {
	t.Helper()
	h := http.Header{}
	setQuotaHeaders(h, mustLimitConf(t, `{"limit":1,"time_window":1}`), []quota{q})
	return h
}

func TestSetQuotaHeaders(t *testing.T) {
	p := &Plugin{log: zap.NewNop()}
	lc := mustLimitConf(t, `{"limit":100,"time_window":60,"instances":[{"name":"a","limit":100,"time_window":60}]}`)
	c := &call{}
	if rf := p.reserve(keyRequest(t, nil), c, lc, &Instance{Name: "a"}, 60); rf != nil || len(c.quotas) != 1 {
		t.Fatalf("refused %+v", rf)
	}
	q := c.quotas[0]
	q.reset = 1500 * time.Millisecond // rounded up
	h := quotaHeaders(t, q)
	if h.Get("X-AI-RateLimit-Limit-a") != "100" || h.Get("X-AI-RateLimit-Remaining-a") != "40" || h.Get("X-AI-RateLimit-Reset-a") != "2" {
		t.Fatalf("headers %v", h)
	}
	h = http.Header{}
	setQuotaHeaders(h, mustLimitConf(t, `{"limit":100,"time_window":60,"show_limit_quota_header":false}`), []quota{q})
	setQuotaHeaders(h, nil, []quota{q})
	if len(h) != 0 {
		t.Fatalf("headers %v with show_limit_quota_header false", h)
	}
}

// TestChargeCostSnapshotModel: providers answer with a snapshot name
// (OpenAI's "gpt-4o" answers "gpt-4o-2024-08-06"). The call must be charged
// at the price its estimate used, the requested model's, not as an unpriced
// model: else settling gives the whole estimate back and a cost budget is
// never spent.
func TestChargeCostSnapshotModel(t *testing.T) {
	lc := mustLimitConf(t, `{"limit":10,"time_window":60,"limit_strategy":"cost","prices":{"gpt-4o":{"input":2.5,"output":10}}}`)
	c := &call{requestModel: "gpt-4o", clientModel: "gpt-4o", obs: providers.Observation{
		Model: "gpt-4o-2024-08-06", UsageSeen: true, Usage: providers.Usage{Prompt: 1000, Completion: 100}}}
	if got := lc.charge(c); got != 2500+1000 {
		t.Fatalf("charge = %d, want 3500 (gpt-4o's price)", got)
	}
}

package aiproxy

import (
	"encoding/json"
	"fmt"
	"net/textproto"
	"regexp"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// MultiName is the ai-proxy-multi plugin's name in route confs.
const MultiName = "ai-proxy-multi"

// Fallback is when a failed attempt moves on to another instance.
type Fallback struct {
	On429, On5xx bool
	// RateLimiting skips an instance whose ai-rate-limiting budget is
	// spent instead of refusing the call.
	RateLimiting bool
	// Statuses are fallback_http_statuses: more answers that move on
	// (a dead key's 401, an exhausted account's 402).
	Statuses map[int]bool
	// MaxRetries bounds the attempts after the first; -1 = every instance.
	MaxRetries int
	// Within, when set, returns a failure that took longer instead of
	// retrying it (a slow failure would double the wait).
	Within time.Duration
}

// moves says whether an attempt that failed with reason moves on.
func (f *Fallback) moves(status int, transport bool) bool {
	switch {
	case transport:
		// A refused connection or a timeout is answered 502/504, so
		// http_5xx covers it, as in APISIX.
		return f.On5xx
	case status == 429 && f.On429, status >= 500 && f.On5xx:
		return true
	}
	return f.Statuses[status]
}

// fromVars says the key is made of APISIX variables, which only the
// pre-req filter can read.
func (h *HashKey) fromVars() bool { return h.On == "vars" || h.On == "vars_combinations" }

// HashKey is balancer.hash_on and balancer.key of a chash route.
type HashKey struct {
	On  string // vars, header, cookie, consumer, vars_combinations
	Key string
	// vars are the variable names vars_combinations' key refers to.
	vars []string
}

var (
	varName     = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	varCombined = regexp.MustCompile(`\$([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// ParseMultiConf parses and validates an ai-proxy-multi conf. Instances
// that call the same provider endpoint with the same credentials share one
// health from reg, across routes.
func ParseMultiConf(in []byte, reg *balance.Registry) *Conf {
	c := newConf(MultiName)
	root, err := parseRoot(in, multiSchema)
	if err == nil {
		err = c.parseMulti(root, reg)
	}
	if err != nil {
		c.Err, c.Instances, c.Pool = err, nil, nil
	}
	return c
}

func (c *Conf) parseMulti(root gjson.Result, reg *balance.Registry) *providers.ConfError {
	v := &validator{root: root}
	c.parseShared(v)
	c.parseFallback(v)
	alg := c.parseBalancer(v)
	if v.err != nil {
		return v.err
	}
	list := root.Get("instances")
	switch {
	case !list.Exists():
		return &providers.ConfError{Field: "instances", Msg: "is required"}
	case !list.IsArray():
		return &providers.ConfError{Field: "instances", Msg: "must be an array"}
	}
	items := list.Array()
	if len(items) == 0 || len(items) > balance.MaxMembers {
		return &providers.ConfError{Field: "instances", Msg: fmt.Sprintf("must have 1 to %d instances", balance.MaxMembers)}
	}
	members := make([]balance.Member, 0, len(items))
	names := map[string]bool{}
	weights := 0
	for i, item := range items {
		prefix := "instances[" + strconv.Itoa(i) + "]."
		if !item.IsObject() {
			return &providers.ConfError{Field: "instances[" + strconv.Itoa(i) + "]", Msg: "must be an object"}
		}
		if err := checkFields(item, multiInstanceSchema, "", prefix); err != nil {
			return err
		}
		iv := &validator{root: item, prefix: prefix}
		name := iv.str("name", true)
		if len(name) > 100 {
			iv.fail("name", "must be at most 100 bytes")
		}
		if names[name] {
			iv.fail("name", "repeats another instance's name")
		}
		names[name] = true
		prio, _ := iv.integer("priority", math32Min)
		weight, ok := iv.integer("weight", 0)
		if !ok && iv.err == nil {
			iv.fail("weight", "is required")
		}
		models := iv.models("models")
		iv.object("checks", false)
		inst := parseInstance(iv)
		if iv.err != nil {
			return iv.err
		}
		inst.Name = name
		inst.health = reg.For(instanceIdentity(item))
		c.Instances = append(c.Instances, inst)
		members = append(members, balance.Member{Name: name, Priority: prio, Weight: weight, Models: models, Health: inst.health})
		weights += weight
	}
	if weights == 0 {
		return &providers.ConfError{Field: "instances", Msg: "every instance has weight 0, so none can be chosen"}
	}
	pool, err := balance.NewPool(members, alg)
	if err != nil {
		return &providers.ConfError{Field: "instances", Msg: err.Error()}
	}
	c.Pool = pool
	return nil
}

// math32Min is the lowest priority accepted (any int32).
const math32Min = -1 << 31

func (c *Conf) parseFallback(v *validator) {
	c.Fallback.MaxRetries = -1
	if n, ok := v.integer("max_retries", 0); ok {
		c.Fallback.MaxRetries = n
	}
	c.Fallback.Within = v.millis("retry_on_failure_within_ms", 1, 0)
	fs := v.get("fallback_strategy")
	add := func(s string, list bool) {
		switch {
		case s == "http_429":
			c.Fallback.On429 = true
		case s == "http_5xx":
			c.Fallback.On5xx = true
		case s == "rate_limiting" && list, s == "instance_health_and_rate_limiting" && !list:
			// Cooling instances and those the providers report out of
			// budget are skipped whatever the strategy; this adds the
			// route's own ai-rate-limiting budgets.
			c.Fallback.RateLimiting = true
		default:
			v.fail("fallback_strategy", "has unknown strategy %.40q", s)
		}
	}
	switch {
	case !fs.Exists():
	case fs.Type == gjson.String:
		add(fs.Str, false)
	case fs.IsArray():
		fs.ForEach(func(_, s gjson.Result) bool {
			if s.Type != gjson.String {
				v.fail("fallback_strategy", "must list strings")
				return false
			}
			add(s.Str, true)
			return true
		})
	default:
		v.fail("fallback_strategy", "must be a string or an array of strings")
	}
	st := v.get("fallback_http_statuses")
	switch {
	case !st.Exists():
	case !st.IsArray():
		v.fail("fallback_http_statuses", "must be an array of HTTP statuses")
	default:
		c.Fallback.Statuses = map[int]bool{}
		st.ForEach(func(_, s gjson.Result) bool {
			if s.Type != gjson.Number || s.Num != float64(int(s.Num)) || s.Num < 400 || s.Num > 599 {
				v.fail("fallback_http_statuses", "must list integer statuses from 400 to 599")
				return false
			}
			c.Fallback.Statuses[int(s.Num)] = true
			return true
		})
	}
}

func (c *Conf) parseBalancer(v *validator) balance.Algorithm {
	if !v.object("balancer", false) {
		return balance.RoundRobin
	}
	switch alg := v.str("balancer.algorithm", false); alg {
	case "", "roundrobin":
		return balance.RoundRobin
	case "chash":
	case "semantic":
		v.fail("balancer.algorithm", "semantic is not supported by the runner; use roundrobin, chash, or model groups (instances[].models)")
		return balance.RoundRobin
	default:
		v.fail("balancer.algorithm", "must be roundrobin or chash")
		return balance.RoundRobin
	}
	h := &HashKey{On: v.str("balancer.hash_on", false), Key: v.str("balancer.key", false)}
	if h.On == "" {
		h.On = "vars"
	}
	switch h.On {
	case "consumer":
	case "vars":
		if !varName.MatchString(h.Key) {
			v.fail("balancer.key", "must name an nginx variable (remote_addr, arg_user…)")
		}
	case "header", "cookie":
		if !isToken(h.Key) {
			v.fail("balancer.key", "must name a %s", h.On)
		}
	case "vars_combinations":
		for _, m := range varCombined.FindAllStringSubmatch(h.Key, -1) {
			h.vars = append(h.vars, m[1])
		}
		if len(h.vars) == 0 {
			v.fail("balancer.key", "must combine nginx variables ($remote_addr$http_x_user)")
		}
	default:
		v.fail("balancer.hash_on", "must be vars, header, cookie, consumer or vars_combinations")
	}
	c.Hash = h
	return balance.CHash
}

// models reads an instance's model group.
func (v *validator) models(path string) []string {
	r := v.get(path)
	if !r.Exists() {
		return nil
	}
	if !r.IsArray() || len(r.Array()) == 0 {
		v.fail(path, "must be a non-empty array of model names")
		return nil
	}
	var out []string
	seen := map[string]bool{}
	r.ForEach(func(_, m gjson.Result) bool {
		if m.Type != gjson.String || m.Str == "" || len(m.Str) > 256 {
			v.fail(path, "must list model names (non-empty strings)")
			return false
		}
		if seen[m.Str] {
			v.fail(path, "names %.64q twice", m.Str)
			return false
		}
		seen[m.Str] = true
		out = append(out, m.Str)
		return true
	})
	return out
}

// instanceIdentity is what makes two instances the same upstream for the
// breaker: provider, endpoint, location and credentials. Options and
// names do not: a 429 for a key applies whatever model the call asks.
// Spelling must not split one upstream in two: values are compared
// decoded (encoding/json sorts keys), header names canonical.
func instanceIdentity(item gjson.Result) []byte {
	var parts []any
	for _, f := range []string{"provider", "override.endpoint", "provider_conf", "auth"} {
		var v any
		_ = json.Unmarshal([]byte(item.Get(f).Raw), &v)
		if auth, ok := v.(map[string]any); ok && f == "auth" {
			if hdr, ok := auth["header"].(map[string]any); ok {
				canon := make(map[string]any, len(hdr))
				for k, val := range hdr {
					canon[textproto.CanonicalMIMEHeaderKey(k)] = val
				}
				auth["header"] = canon
			}
		}
		parts = append(parts, v)
	}
	b, _ := json.Marshal(parts)
	return b
}

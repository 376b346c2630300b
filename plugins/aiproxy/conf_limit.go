package aiproxy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

// LimitName is the ai-rate-limiting plugin's name in route confs.
const LimitName = "ai-rate-limiting"

// LimitConf is one parsed ai-rate-limiting conf: the token (or cost)
// budgets of a route, enforced by the relay around each attempt.
type LimitConf struct {
	ID confID
	// hash names the conf's content in counter keys: an edit that changes
	// the limits starts new counters, any other route edit keeps them.
	hash     string
	routeID  atomic.Pointer[string]
	Strategy string // total_tokens, prompt_tokens, completion_tokens, cost

	Global    *budget            // limit + time_window: one counter for the route
	Instances map[string]*budget // instances[]: one counter per instance
	Rules     []rule             // rules[]: one counter per rule and key

	RejectedCode int
	RejectedMsg  string
	ShowHeaders  bool
	// FailAllow lets calls through when the counters cannot be reached
	// (allow_degradation / fail_mode: allow); else they are refused.
	FailAllow bool
	Policy    string // local, redis
	Redis     *limit.RedisConf
	store     limit.Store

	// Prices are per million tokens, by model ("*" for any other).
	Prices map[string]price

	// names caches each instance's quota header names.
	names sync.Map // instance name -> quotaNames

	Err *providers.ConfError
}

func (c *LimitConf) id() confID { return c.ID }

type budget struct {
	Limit  int64 // tokens, or millionths of a currency unit for cost
	Window time.Duration
}

type rule struct {
	budget
	key    string // the template, e.g. "$consumer_name $http_x_team"
	prefix string // header prefix
	names  quotaNames
}

type price struct{ Input, CachedInput, Output float64 }

var limitSchema = schema{
	"": fieldSet([]string{
		"limit", "time_window", "show_limit_quota_header", "limit_strategy", "instances",
		"rejected_code", "rejected_msg", "policy", "allow_degradation", "fail_mode", "rules", "prices",
		"redis_host", "redis_port", "redis_username", "redis_password", "redis_database", "redis_timeout",
		"redis_ssl", "redis_ssl_verify", "redis_keepalive_timeout", "redis_keepalive_pool",
	}),
	"prices": nil,
}

// keyVar is a variable in a rule key: $name or ${name}.
var keyVar = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?`)

// ParseLimitConf parses and validates an ai-rate-limiting conf. Counters
// of the local policy live in local; redis ones in a client from redises.
func ParseLimitConf(in []byte, local limit.Store, redises *limit.Redises) *LimitConf {
	c := &LimitConf{}
	if _, err := rand.Read(c.ID[:]); err != nil {
		panic("ai-proxy: no randomness for conf ids: " + err.Error())
	}
	sum := sha256.Sum256(in)
	c.hash = hex.EncodeToString(sum[:8])
	root, err := parseRoot(in, limitSchema)
	if err == nil {
		err = c.parse(root)
	}
	if err != nil {
		c.Err = err
		return c
	}
	if c.Policy == "redis" {
		if redises != nil { // nil: checking a conf only (ai-proxy-runner route)
			c.store = redises.For(*c.Redis)
		}
	} else {
		c.store = local
	}
	return c
}

func (c *LimitConf) parse(root gjson.Result) *providers.ConfError {
	v := &validator{root: root}
	c.Strategy = v.str("limit_strategy", false)
	switch c.Strategy {
	case "":
		c.Strategy = "total_tokens"
	case "total_tokens", "prompt_tokens", "completion_tokens", "cost":
	case "expression":
		v.fail("limit_strategy", "expression (cost_expr) is not supported by the runner; use cost with prices")
	default:
		v.fail("limit_strategy", "must be total_tokens, prompt_tokens, completion_tokens or cost")
	}
	c.ShowHeaders = v.boolean("show_limit_quota_header", true)
	c.RejectedCode = v.intOr("rejected_code", 200, 503)
	if c.RejectedCode > 599 {
		v.fail("rejected_code", "must be at most 599")
	}
	c.RejectedMsg = v.str("rejected_msg", false)
	c.parseFailMode(v)
	c.parsePolicy(v)
	c.parsePrices(v)
	if v.err != nil {
		return v.err
	}

	hasLimit := root.Get("limit").Exists() || root.Get("time_window").Exists()
	hasRules := root.Get("rules").Exists()
	switch {
	case hasRules && (hasLimit || root.Get("instances").Exists()):
		return &providers.ConfError{Field: "rules", Msg: "cannot be set with limit/time_window or instances"}
	case hasRules:
		c.parseRules(v, root.Get("rules"))
	default:
		if hasLimit {
			b := c.budget(v, "", "limit")
			c.Global = &b
		}
		c.parseInstances(v, root.Get("instances"))
		if c.Global == nil && c.Instances == nil && v.err == nil {
			v.fail("limit", "is required (or instances, or rules)")
		}
	}
	return v.err
}

// budget reads a count and a time_window at prefix; count is "limit" or
// "count". Cost budgets are in currency units and may have fractions.
func (c *LimitConf) budget(v *validator, prefix, count string) budget {
	var b budget
	r := v.get(prefix + count)
	switch {
	case !r.Exists():
		v.fail(prefix+count, "is required")
	case r.Type == gjson.String:
		v.fail(prefix+count, "must be a number (variables are not supported)")
	case r.Type != gjson.Number || r.Num <= 0 || r.Num > 1e15:
		v.fail(prefix+count, "must be a number above 0")
	case c.Strategy == "cost" && (r.Num < 1e-6 || r.Num > 9e12):
		// Kept in millionths in an int64.
		v.fail(prefix+count, "must be a spend from 0.000001 to 9e12")
	case c.Strategy == "cost":
		b.Limit = int64(math.Round(r.Num * 1e6))
	case r.Num != math.Trunc(r.Num):
		v.fail(prefix+count, "must be a whole number of tokens")
	default:
		b.Limit = int64(r.Num)
	}
	tw := v.get(prefix + "time_window")
	switch {
	case !tw.Exists():
		v.fail(prefix+"time_window", "is required")
	case tw.Type != gjson.Number || tw.Num < 1 || tw.Num != math.Trunc(tw.Num) || tw.Num > 366*24*3600:
		v.fail(prefix+"time_window", "must be a whole number of seconds from 1")
	default:
		b.Window = time.Duration(tw.Num) * time.Second
	}
	return b
}

func (c *LimitConf) parseInstances(v *validator, list gjson.Result) {
	if !list.Exists() {
		return
	}
	if !list.IsArray() || len(list.Array()) == 0 {
		v.fail("instances", "must be a non-empty array")
		return
	}
	c.Instances = map[string]*budget{}
	for i, item := range list.Array() {
		prefix := "instances[" + strconv.Itoa(i) + "]."
		if !item.IsObject() {
			v.fail(prefix[:len(prefix)-1], "must be an object")
			return
		}
		if err := checkFields(item, schema{"": fieldSet([]string{"name", "limit", "time_window"})}, "", prefix); err != nil {
			v.fail(err.Field, "%s", err.Msg)
			return
		}
		iv := &validator{root: item, prefix: prefix}
		name := iv.str("name", true)
		b := c.budget(iv, "", "limit")
		if _, dup := c.Instances[name]; dup && iv.err == nil {
			iv.fail("name", "repeats another entry's name")
		}
		if iv.err != nil {
			v.err = iv.err
			return
		}
		c.Instances[name] = &b
	}
}

func (c *LimitConf) parseRules(v *validator, list gjson.Result) {
	if !list.IsArray() || len(list.Array()) == 0 {
		v.fail("rules", "must be a non-empty array")
		return
	}
	keys := map[string]bool{}
	for i, item := range list.Array() {
		prefix := "rules[" + strconv.Itoa(i) + "]."
		if !item.IsObject() {
			v.fail(prefix[:len(prefix)-1], "must be an object")
			return
		}
		if err := checkFields(item, schema{"": fieldSet([]string{"count", "time_window", "key", "header_prefix"})}, "", prefix); err != nil {
			v.fail(err.Field, "%s", err.Msg)
			return
		}
		iv := &validator{root: item, prefix: prefix}
		r := rule{budget: c.budget(iv, "", "count"), key: iv.str("key", true), prefix: iv.str("header_prefix", false)}
		if r.prefix == "" {
			r.prefix = strconv.Itoa(i + 1)
		}
		base := "X-AI-" + r.prefix + "-RateLimit-"
		r.names = newQuotaNames(base+"Limit", base+"Remaining", base+"Reset")
		if !isToken(r.prefix) {
			iv.fail("header_prefix", "must be usable in a header name")
		}
		vars := keyVar.FindAllStringSubmatch(r.key, -1)
		if len(vars) == 0 && iv.err == nil {
			iv.fail("key", "must contain a variable ($consumer_name, $remote_addr, $http_x_user…)")
		}
		for _, m := range vars {
			if varResolver(m[1]) == nil && iv.err == nil {
				iv.fail("key", "uses $%s, which the runner cannot see; use remote_addr, consumer_name, uri, host, request_method, route_id, http_*, arg_* or cookie_*", m[1])
			}
		}
		if keys[r.key] && iv.err == nil {
			iv.fail("key", "repeats another rule's key")
		}
		keys[r.key] = true
		if iv.err != nil {
			v.err = iv.err
			return
		}
		c.Rules = append(c.Rules, r)
	}
}

func (c *LimitConf) parseFailMode(v *validator) {
	allow := v.boolean("allow_degradation", false)
	switch mode := v.str("fail_mode", false); mode {
	case "":
		c.FailAllow = allow
	case "allow", "deny":
		c.FailAllow = mode == "allow"
		if v.get("allow_degradation").Exists() && allow != c.FailAllow {
			v.fail("fail_mode", "contradicts allow_degradation")
		}
	default:
		v.fail("fail_mode", "must be allow or deny")
	}
}

func (c *LimitConf) parsePolicy(v *validator) {
	c.Policy = v.str("policy", false)
	redisFields := []string{"redis_host", "redis_port", "redis_username", "redis_password", "redis_database",
		"redis_timeout", "redis_ssl", "redis_ssl_verify", "redis_keepalive_timeout", "redis_keepalive_pool"}
	switch c.Policy {
	case "", "local":
		c.Policy = "local"
		for _, f := range redisFields {
			if v.get(f).Exists() {
				v.fail(f, "is only for policy redis")
				return
			}
		}
	case "redis":
		c.Redis = &limit.RedisConf{
			Host:             v.str("redis_host", true),
			Port:             v.intOr("redis_port", 1, 6379),
			Username:         v.str("redis_username", false),
			Password:         v.str("redis_password", false),
			Database:         v.intOr("redis_database", 0, 0),
			Timeout:          v.millis("redis_timeout", 1, time.Second),
			SSL:              v.boolean("redis_ssl", false),
			SSLVerify:        v.boolean("redis_ssl_verify", false),
			KeepaliveTimeout: v.millis("redis_keepalive_timeout", 1000, 10*time.Second),
			KeepalivePool:    v.intOr("redis_keepalive_pool", 1, 100),
		}
		if c.Redis.Port > 65535 {
			v.fail("redis_port", "must be at most 65535")
		}
	case "redis-cluster", "redis-sentinel":
		v.fail("policy", "%s is not supported by the runner; use redis", c.Policy)
	default:
		v.fail("policy", "must be local or redis")
	}
}

func (c *LimitConf) parsePrices(v *validator) {
	p := v.get("prices")
	if !p.Exists() {
		if c.Strategy == "cost" {
			v.fail("prices", "is required with limit_strategy cost")
		}
		return
	}
	if !p.IsObject() {
		v.fail("prices", "must map models to prices")
		return
	}
	c.Prices = map[string]price{}
	p.ForEach(func(model, val gjson.Result) bool {
		path := "prices." + model.Str
		if !val.IsObject() {
			v.fail(path, "must be an object of input, cached_input, output (per million tokens)")
			return false
		}
		if dup, ok := providers.DuplicateKey(val); ok {
			v.fail(path+"."+dup, "appears more than once")
			return false
		}
		var pr price
		for name, dst := range map[string]*float64{"input": &pr.Input, "cached_input": &pr.CachedInput, "output": &pr.Output} {
			f := val.Get(name)
			switch {
			case !f.Exists():
			case f.Type != gjson.Number || f.Num < 0 || f.Num > 1e6:
				v.fail(path+"."+name, "must be a number from 0")
				return false
			default:
				*dst = f.Num
			}
		}
		if !val.Get("cached_input").Exists() {
			pr.CachedInput = pr.Input
		}
		val.ForEach(func(k, _ gjson.Result) bool {
			if k.Str != "input" && k.Str != "cached_input" && k.Str != "output" {
				v.fail(path+"."+k.Str, "unknown field")
				return false
			}
			return true
		})
		c.Prices[model.Str] = pr
		return v.err == nil
	})
}

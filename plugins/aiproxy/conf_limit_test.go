package aiproxy

import (
	"strings"
	"testing"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
)

func TestParseLimitConfValid(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(t *testing.T, c *LimitConf)
	}{
		{"docs: limit and time_window", `{"limit":300,"time_window":30}`, func(t *testing.T, c *LimitConf) {
			if c.Global == nil || *c.Global != (budget{Limit: 300, Window: 30 * time.Second}) {
				t.Fatalf("Global = %+v", c.Global)
			}
			if c.Instances != nil || c.Rules != nil {
				t.Fatalf("instances %v rules %v", c.Instances, c.Rules)
			}
		}},
		{"docs: prompt tokens, 429, message", `{"limit":300,"time_window":30,"limit_strategy":"prompt_tokens","rejected_code":429,"rejected_msg":"slow down","show_limit_quota_header":false}`, func(t *testing.T, c *LimitConf) {
			if c.Strategy != "prompt_tokens" || c.RejectedCode != 429 || c.RejectedMsg != "slow down" || c.ShowHeaders {
				t.Fatalf("conf = %+v", c)
			}
		}},
		{"completion tokens", `{"limit":1,"time_window":1,"limit_strategy":"completion_tokens"}`, func(t *testing.T, c *LimitConf) {
			if c.Strategy != "completion_tokens" || c.Global.Limit != 1 || c.Global.Window != time.Second {
				t.Fatalf("conf = %+v global %+v", c, c.Global)
			}
		}},
		{"docs: instances", `{"instances":[{"name":"deepseek-instance","limit":50,"time_window":60},{"name":"openai-instance","limit":100,"time_window":60}],"limit_strategy":"total_tokens"}`, func(t *testing.T, c *LimitConf) {
			want := map[string]budget{"deepseek-instance": {50, time.Minute}, "openai-instance": {100, time.Minute}}
			if len(c.Instances) != len(want) || c.Global != nil {
				t.Fatalf("instances %v global %v", c.Instances, c.Global)
			}
			for name, b := range want {
				if got := c.Instances[name]; got == nil || *got != b {
					t.Fatalf("instance %s = %+v, want %+v", name, got, b)
				}
			}
		}},
		{"limit with instances", `{"limit":1000,"time_window":3600,"instances":[{"name":"ai-proxy-openai","limit":10,"time_window":60}]}`, func(t *testing.T, c *LimitConf) {
			if c.Global == nil || c.Global.Limit != 1000 || c.Instances["ai-proxy-openai"] == nil {
				t.Fatalf("global %+v instances %v", c.Global, c.Instances)
			}
		}},
		{"rules: consumer name", `{"rules":[{"key":"$consumer_name","count":1000,"time_window":60}]}`, func(t *testing.T, c *LimitConf) {
			if len(c.Rules) != 1 {
				t.Fatalf("rules = %+v", c.Rules)
			}
			r := c.Rules[0]
			if r.key != "$consumer_name" || r.prefix != "1" || r.budget != (budget{1000, time.Minute}) {
				t.Fatalf("rule = %+v", r)
			}
		}},
		{"rules: braced header, prefix, combined keys", `{"rules":[
			{"key":"${http_x_user}","count":500,"time_window":60,"header_prefix":"user"},
			{"key":"$consumer_name $http_x_team","count":2000,"time_window":3600},
			{"key":"$remote_addr","count":100,"time_window":1},
			{"key":"$arg_tenant-$cookie_session $uri $host $request_method $route_id","count":7,"time_window":86400}
		],"limit_strategy":"completion_tokens"}`, func(t *testing.T, c *LimitConf) {
			if len(c.Rules) != 4 || c.Global != nil || c.Instances != nil {
				t.Fatalf("rules %+v", c.Rules)
			}
			wantPrefix := []string{"user", "2", "3", "4"}
			for i, r := range c.Rules {
				if r.prefix != wantPrefix[i] {
					t.Fatalf("rule %d prefix %q, want %q", i, r.prefix, wantPrefix[i])
				}
			}
			if c.Rules[1].key != "$consumer_name $http_x_team" || c.Rules[1].budget != (budget{2000, time.Hour}) {
				t.Fatalf("rule 1 = %+v", c.Rules[1])
			}
		}},
		{"docs: redis policy", `{"limit":300,"time_window":30,"policy":"redis","redis_host":"redis.example","redis_port":6380,"redis_username":"u","redis_password":"p","redis_database":2,"redis_timeout":500,"redis_ssl":true,"redis_ssl_verify":true,"redis_keepalive_timeout":20000,"redis_keepalive_pool":5}`, func(t *testing.T, c *LimitConf) {
			want := limit.RedisConf{Host: "redis.example", Port: 6380, Username: "u", Password: "p", Database: 2,
				Timeout: 500 * time.Millisecond, SSL: true, SSLVerify: true, KeepaliveTimeout: 20 * time.Second, KeepalivePool: 5}
			if c.Policy != "redis" || c.Redis == nil || *c.Redis != want {
				t.Fatalf("policy %q redis %+v", c.Policy, c.Redis)
			}
			if c.store != nil {
				t.Fatal("a conf parsed without Redises has a store")
			}
		}},
		{"redis defaults", `{"limit":1,"time_window":1,"policy":"redis","redis_host":"127.0.0.1"}`, func(t *testing.T, c *LimitConf) {
			want := limit.RedisConf{Host: "127.0.0.1", Port: 6379, Timeout: time.Second, KeepaliveTimeout: 10 * time.Second, KeepalivePool: 100}
			if *c.Redis != want {
				t.Fatalf("redis %+v, want %+v", *c.Redis, want)
			}
		}},
		{"cost with prices", `{"limit":2.5,"time_window":86400,"limit_strategy":"cost","prices":{"gpt-4o":{"input":2.5,"cached_input":1.25,"output":10},"*":{"input":1,"output":2}}}`, func(t *testing.T, c *LimitConf) {
			if c.Strategy != "cost" || c.Global.Limit != 2_500_000 || c.Global.Window != 24*time.Hour {
				t.Fatalf("strategy %q global %+v", c.Strategy, c.Global)
			}
			want := map[string]price{"gpt-4o": {2.5, 1.25, 10}, "*": {1, 1, 2}}
			if len(c.Prices) != len(want) {
				t.Fatalf("prices %+v", c.Prices)
			}
			for m, p := range want {
				if c.Prices[m] != p {
					t.Fatalf("price of %s = %+v, want %+v (cached_input defaults to input)", m, c.Prices[m], p)
				}
			}
		}},
		{"cost: fractional limits to millionths", `{"instances":[{"name":"a","limit":0.000001,"time_window":60},{"name":"b","limit":0.1234567,"time_window":60},{"name":"c","limit":1000000,"time_window":60}],"limit_strategy":"cost","prices":{"*":{"input":0}}}`, func(t *testing.T, c *LimitConf) {
			for name, want := range map[string]int64{"a": 1, "b": 123457, "c": 1_000_000_000_000} {
				if got := c.Instances[name].Limit; got != want {
					t.Fatalf("instance %s limit %d, want %d", name, got, want)
				}
			}
		}},
		{"prices with other strategies", `{"limit":10,"time_window":60,"prices":{"m":{"output":3}}}`, func(t *testing.T, c *LimitConf) {
			if c.Prices["m"] != (price{Output: 3}) {
				t.Fatalf("prices %+v", c.Prices)
			}
		}},
		{"fail open by allow_degradation", `{"limit":1,"time_window":1,"allow_degradation":true}`, func(t *testing.T, c *LimitConf) {
			if !c.FailAllow {
				t.Fatal("allow_degradation true fails closed")
			}
		}},
		{"fail open by fail_mode", `{"limit":1,"time_window":1,"fail_mode":"allow"}`, func(t *testing.T, c *LimitConf) {
			if !c.FailAllow {
				t.Fatal("fail_mode allow fails closed")
			}
		}},
		{"fail_mode agreeing with allow_degradation", `{"limit":1,"time_window":1,"fail_mode":"deny","allow_degradation":false}`, func(t *testing.T, c *LimitConf) {
			if c.FailAllow {
				t.Fatal("fail_mode deny fails open")
			}
		}},
		{"policy local explicitly", `{"limit":1,"time_window":1,"policy":"local"}`, func(t *testing.T, c *LimitConf) {
			if c.Policy != "local" || c.Redis != nil {
				t.Fatalf("policy %q redis %+v", c.Policy, c.Redis)
			}
		}},
		{"largest whole limit and window", `{"limit":1000000000000000,"time_window":31622400}`, func(t *testing.T, c *LimitConf) {
			if c.Global.Limit != 1e15 || c.Global.Window != 366*24*time.Hour {
				t.Fatalf("global %+v", c.Global)
			}
		}},
	}
	local := limit.NewLocal(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseLimitConf([]byte(tt.conf), local, nil)
			if c.Err != nil {
				t.Fatalf("unexpected error: %v", c.Err)
			}
			if c.Policy == "local" && c.store != local {
				t.Fatal("a local conf does not use the local store")
			}
			tt.check(t, c)
		})
	}
}

func TestParseLimitConfDefaults(t *testing.T) {
	local := limit.NewLocal(10)
	c := ParseLimitConf([]byte(`{"limit":100,"time_window":60}`), local, nil)
	if c.Err != nil {
		t.Fatal(c.Err)
	}
	switch {
	case c.Strategy != "total_tokens":
		t.Fatalf("strategy %q, want total_tokens", c.Strategy)
	case c.RejectedCode != 503:
		t.Fatalf("rejected_code %d, want 503", c.RejectedCode)
	case c.RejectedMsg != "":
		t.Fatalf("rejected_msg %q", c.RejectedMsg)
	case !c.ShowHeaders:
		t.Fatal("quota headers hidden by default")
	case c.FailAllow:
		t.Fatal("fails open by default")
	case c.Policy != "local" || c.Redis != nil || c.store != local:
		t.Fatalf("policy %q redis %+v", c.Policy, c.Redis)
	case c.Prices != nil:
		t.Fatalf("prices %+v", c.Prices)
	}
}

// The counters of a conf are named by its content: the same conf parsed
// again (another conf token for the same route) keeps them.
func TestParseLimitConfHash(t *testing.T) {
	conf := []byte(`{"limit":100,"time_window":60}`)
	a, b := ParseLimitConf(conf, nil, nil), ParseLimitConf(conf, nil, nil)
	other := ParseLimitConf([]byte(`{"limit":101,"time_window":60}`), nil, nil)
	if a.hash == "" || a.hash != b.hash {
		t.Fatalf("hashes %q and %q of one conf", a.hash, b.hash)
	}
	if a.hash == other.hash {
		t.Fatal("different limits share counters")
	}
	if a.ID == b.ID {
		t.Fatal("two parses share an id")
	}
}

func TestParseLimitConfRedisStore(t *testing.T) {
	rs := limit.NewRedises()
	defer rs.Close()
	conf := []byte(`{"limit":1,"time_window":1,"policy":"redis","redis_host":"127.0.0.1","redis_port":1}`)
	a, b := ParseLimitConf(conf, nil, rs), ParseLimitConf(conf, nil, rs)
	if a.Err != nil || a.store == nil {
		t.Fatalf("err %v store %v", a.Err, a.store)
	}
	if _, ok := a.store.(*limit.Redis); !ok || a.store != b.store {
		t.Fatalf("stores %T %v / %v: want one shared *limit.Redis", a.store, a.store, b.store)
	}
}

func TestParseLimitConfInvalid(t *testing.T) {
	const tw = `"time_window":60`
	tests := []struct {
		name      string
		conf      string
		wantField string
	}{
		{"not json", `{"limit":`, "conf"},
		{"not an object", `[1]`, "conf"},
		{"empty", `{}`, "limit"},
		{"rules with limit", `{"limit":10,` + tw + `,"rules":[{"key":"$remote_addr","count":1,"time_window":1}]}`, "rules"},
		{"rules with time_window", `{` + tw + `,"rules":[{"key":"$remote_addr","count":1,"time_window":1}]}`, "rules"},
		{"rules with instances", `{"instances":[{"name":"a","limit":1,"time_window":1}],"rules":[{"key":"$remote_addr","count":1,"time_window":1}]}`, "rules"},
		{"limit without time_window", `{"limit":10}`, "time_window"},
		{"time_window without limit", `{` + tw + `}`, "limit"},
		{"limit 0", `{"limit":0,` + tw + `}`, "limit"},
		{"limit negative", `{"limit":-5,` + tw + `}`, "limit"},
		{"limit 1.5 tokens", `{"limit":1.5,` + tw + `}`, "limit"},
		{"limit variable", `{"limit":"$http_x_limit",` + tw + `}`, "limit"},
		{"limit numeric string", `{"limit":"100",` + tw + `}`, "limit"},
		{"limit bool", `{"limit":true,` + tw + `}`, "limit"},
		{"limit too large", `{"limit":1e16,` + tw + `}`, "limit"},
		{"time_window 0", `{"limit":10,"time_window":0}`, "time_window"},
		{"time_window fraction", `{"limit":10,"time_window":1.5}`, "time_window"},
		{"time_window string", `{"limit":10,"time_window":"60"}`, "time_window"},
		{"time_window over a leap year", `{"limit":10,"time_window":31622401}`, "time_window"},
		{"rejected_code 199", `{"limit":10,` + tw + `,"rejected_code":199}`, "rejected_code"},
		{"rejected_code 600", `{"limit":10,` + tw + `,"rejected_code":600}`, "rejected_code"},
		{"rejected_code string", `{"limit":10,` + tw + `,"rejected_code":"429"}`, "rejected_code"},
		{"rejected_msg number", `{"limit":10,` + tw + `,"rejected_msg":1}`, "rejected_msg"},
		{"show_limit_quota_header string", `{"limit":10,` + tw + `,"show_limit_quota_header":"false"}`, "show_limit_quota_header"},
		{"unknown strategy", `{"limit":10,` + tw + `,"limit_strategy":"requests"}`, "limit_strategy"},
		{"expression strategy", `{"limit":10,` + tw + `,"limit_strategy":"expression","cost_expr":"input_tokens"}`, "cost_expr"},
		{"expression strategy alone", `{"limit":10,` + tw + `,"limit_strategy":"expression"}`, "limit_strategy"},
		{"cost without prices", `{"limit":10,` + tw + `,"limit_strategy":"cost"}`, "prices"},
		{"prices not an object", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":[1]}`, "prices"},
		{"price not an object", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"gpt-4o":2.5}}`, "prices.gpt-4o"},
		{"price negative input", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"gpt-4o":{"input":-1,"output":10}}}`, "prices.gpt-4o.input"},
		{"price string output", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"gpt-4o":{"input":1,"output":"10"}}}`, "prices.gpt-4o.output"},
		{"price too large cached_input", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"gpt-4o":{"cached_input":1000001}}}`, "prices.gpt-4o.cached_input"},
		{"price unknown field", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"gpt-4o":{"input":1,"discount":0.5}}}`, "prices.gpt-4o.discount"},
		{"price model repeated", `{"limit":10,` + tw + `,"limit_strategy":"cost","prices":{"m":{"input":1},"m":{"input":2}}}`, "prices.m"},
		{"policy redis without redis_host", `{"limit":10,` + tw + `,"policy":"redis"}`, "redis_host"},
		{"policy redis with empty redis_host", `{"limit":10,` + tw + `,"policy":"redis","redis_host":""}`, "redis_host"},
		{"redis_port 70000", `{"limit":10,` + tw + `,"policy":"redis","redis_host":"h","redis_port":70000}`, "redis_port"},
		{"redis_port 0", `{"limit":10,` + tw + `,"policy":"redis","redis_host":"h","redis_port":0}`, "redis_port"},
		{"redis_timeout 0", `{"limit":10,` + tw + `,"policy":"redis","redis_host":"h","redis_timeout":0}`, "redis_timeout"},
		{"redis_database negative", `{"limit":10,` + tw + `,"policy":"redis","redis_host":"h","redis_database":-1}`, "redis_database"},
		{"redis_ssl string", `{"limit":10,` + tw + `,"policy":"redis","redis_host":"h","redis_ssl":"yes"}`, "redis_ssl"},
		{"redis_host with policy local", `{"limit":10,` + tw + `,"policy":"local","redis_host":"h"}`, "redis_host"},
		{"redis_port without policy", `{"limit":10,` + tw + `,"redis_port":6379}`, "redis_port"},
		{"redis_password without policy", `{"limit":10,` + tw + `,"redis_password":"pw"}`, "redis_password"},
		{"policy redis-cluster", `{"limit":10,` + tw + `,"policy":"redis-cluster"}`, "policy"},
		{"policy redis-sentinel", `{"limit":10,` + tw + `,"policy":"redis-sentinel"}`, "policy"},
		{"policy unknown", `{"limit":10,` + tw + `,"policy":"memcached"}`, "policy"},
		{"fail_mode maybe", `{"limit":10,` + tw + `,"fail_mode":"maybe"}`, "fail_mode"},
		{"fail_mode deny with allow_degradation true", `{"limit":10,` + tw + `,"fail_mode":"deny","allow_degradation":true}`, "fail_mode"},
		{"fail_mode allow with allow_degradation false", `{"limit":10,` + tw + `,"fail_mode":"allow","allow_degradation":false}`, "fail_mode"},
		{"allow_degradation string", `{"limit":10,` + tw + `,"allow_degradation":"true"}`, "allow_degradation"},
		{"rules empty", `{"rules":[]}`, "rules"},
		{"rules not an array", `{"rules":{"key":"$remote_addr","count":1,"time_window":1}}`, "rules"},
		{"rule not an object", `{"rules":["$remote_addr"]}`, "rules[0]"},
		{"rule key without a variable", `{"rules":[{"key":"everyone","count":1,"time_window":1}]}`, "rules[0].key"},
		{"rule key only a dollar", `{"rules":[{"key":"$","count":1,"time_window":1}]}`, "rules[0].key"},
		{"rule key missing", `{"rules":[{"count":1,"time_window":1}]}`, "rules[0].key"},
		{"rule key upstream_addr", `{"rules":[{"key":"$upstream_addr","count":1,"time_window":1}]}`, "rules[0].key"},
		{"rule key one unseen variable of two", `{"rules":[{"key":"$consumer_name $server_addr","count":1,"time_window":1}]}`, "rules[0].key"},
		{"rule keys repeated", `{"rules":[{"key":"$consumer_name","count":1,"time_window":1},{"key":"$consumer_name","count":5,"time_window":60}]}`, "rules[1].key"},
		{"rule count 0", `{"rules":[{"key":"$remote_addr","count":0,"time_window":1}]}`, "rules[0].count"},
		{"rule count variable", `{"rules":[{"key":"$remote_addr","count":"$http_x_count","time_window":1}]}`, "rules[0].count"},
		{"rule limit instead of count", `{"rules":[{"key":"$remote_addr","limit":1,"time_window":1}]}`, "rules[0].limit"},
		{"rule without time_window", `{"rules":[{"key":"$remote_addr","count":1}]}`, "rules[0].time_window"},
		{"rule header_prefix with space", `{"rules":[{"key":"$remote_addr","count":1,"time_window":1,"header_prefix":"a b"}]}`, "rules[0].header_prefix"},
		{"rule header_prefix not a string", `{"rules":[{"key":"$remote_addr","count":1,"time_window":1,"header_prefix":5}]}`, "rules[0].header_prefix"},
		{"rule repeated field", `{"rules":[{"key":"$remote_addr","count":1,"count":2,"time_window":1}]}`, "rules[0].count"},
		{"instances empty", `{"instances":[]}`, "instances"},
		{"instance not an object", `{"instances":["a"]}`, "instances[0]"},
		{"instance without name", `{"instances":[{"limit":1,"time_window":1}]}`, "instances[0].name"},
		{"instance without limit", `{"instances":[{"name":"a","time_window":1}]}`, "instances[0].limit"},
		{"instance with 1.5 tokens", `{"instances":[{"name":"a","limit":1.5,"time_window":1}]}`, "instances[0].limit"},
		{"instance unknown field", `{"instances":[{"name":"a","limit":1,"time_window":1,"priority":1}]}`, "instances[0].priority"},
		{"instance names repeated", `{"instances":[{"name":"a","limit":1,"time_window":1},{"name":"b","limit":1,"time_window":1},{"name":"a","limit":2,"time_window":2}]}`, "instances[2].name"},
		{"instance repeated field", `{"instances":[{"name":"a","limit":1,"limit":100,"time_window":1}]}`, "instances[0].limit"},
		{"unknown top-level field", `{"limit":10,` + tw + `,"key":"remote_addr"}`, "key"},
		{"misspelt top-level field", `{"limit":10,` + tw + `,"time_windw":60}`, "time_windw"},
		{"repeated top-level key", `{"limit":10,"limit":1000000,` + tw + `}`, "limit"},
		{"repeated policy", `{"limit":10,` + tw + `,"policy":"local","policy":"redis"}`, "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseLimitConf([]byte(tt.conf), limit.NewLocal(1), nil)
			switch {
			case c.Err == nil:
				t.Fatalf("accepted; want an error naming %q", tt.wantField)
			case c.Err.Field != tt.wantField:
				t.Fatalf("error names %q (%v), want %q", c.Err.Field, c.Err, tt.wantField)
			case c.Err.Msg == "":
				t.Fatal("error without a message")
			}
		})
	}
}

// TestParseLimitConfCostLimitRange: a cost limit is kept in millionths of
// a currency unit; a limit accepted as valid must be a positive budget.
func TestParseLimitConfCostLimitRange(t *testing.T) {
	for _, lim := range []string{"1e13", "1e15", "0.0000001"} {
		t.Run(lim, func(t *testing.T) {
			c := ParseLimitConf([]byte(`{"limit":`+lim+`,"time_window":60,"limit_strategy":"cost","prices":{"*":{"input":1}}}`), nil, nil)
			if c.Err != nil {
				if c.Err.Field != "limit" {
					t.Fatalf("error names %q (%v), want limit", c.Err.Field, c.Err)
				}
				return
			}
			if c.Global.Limit <= 0 {
				t.Fatalf("limit %s accepted as a budget of %d millionths", lim, c.Global.Limit)
			}
		})
	}
}

// TestParseLimitConfPriceRepeatedField: a price object with a repeated
// field is as ambiguous as any other repeated key (gjson reads the first,
// APISIX's decoder the last), so it must be refused like the others.
func TestParseLimitConfPriceRepeatedField(t *testing.T) {
	c := ParseLimitConf([]byte(`{"limit":10,"time_window":60,"limit_strategy":"cost","prices":{"m":{"input":1,"input":100}}}`), nil, nil)
	if c.Err == nil || c.Err.Field != "prices.m.input" {
		t.Fatalf("err = %v, want one naming prices.m.input", c.Err)
	}
}

func TestParseLimitConfErrorNeverQuotesRedisPassword(t *testing.T) {
	const secret = "hunter2-s3cr3t-PASSWORD"
	confs := []string{
		`{"limit":10,"time_window":60,"policy":"local","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_port":70000,"redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":"` + secret + `","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":["` + secret + `"]}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":{"` + secret + `":1}}`,
		`{"limit":0,"time_window":60,"policy":"redis","redis_host":"h","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis-cluster","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":"` + secret + `","fail_mode":"maybe"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":"` + secret + `","extra":1}`,
		`{"rules":[{"key":"$upstream_addr","count":1,"time_window":1}],"policy":"redis","redis_host":"h","redis_password":"` + secret + `"}`,
		`{"limit":10,"time_window":60,"policy":"redis","redis_host":"h","redis_password":"` + secret + `"`,
	}
	for i, conf := range confs {
		c := ParseLimitConf([]byte(conf), nil, nil)
		if c.Err == nil {
			t.Fatalf("conf %d accepted", i)
		}
		if strings.Contains(c.Err.Error(), secret) || strings.Contains(c.Err.Field, "s3cr3t") || strings.Contains(c.Err.Msg, "s3cr3t") {
			t.Fatalf("conf %d: error quotes the password: %v", i, c.Err)
		}
	}
}

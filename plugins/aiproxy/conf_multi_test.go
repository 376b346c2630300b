package aiproxy

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
)

// multiSecret is in the auth headers of every conf below: no error may
// ever quote it.
const multiSecret = "sk-secret"

// multiConf expands AUTH in a conf into an auth object carrying multiSecret.
func multiConf(s string) []byte {
	return []byte(strings.ReplaceAll(s, "AUTH", `"auth":{"header":{"Authorization":"Bearer `+multiSecret+`"}}`))
}

// apisixDocsRoute is an ai-proxy-multi conf as the APISIX docs write it:
// two providers with weights and priorities, fallback, retries and a
// consistent hash on a header.
const apisixDocsRoute = `{
  "instances": [
    {
      "name": "openai-instance",
      "provider": "openai",
      "priority": 1,
      "weight": 8,
      "auth": {"header": {"Authorization": "Bearer sk-secret-openai"}},
      "options": {"model": "gpt-4"}
    },
    {
      "name": "deepseek-instance",
      "provider": "deepseek",
      "priority": 0,
      "weight": 2,
      "auth": {"header": {"Authorization": "Bearer sk-secret-deepseek"}},
      "options": {"model": "deepseek-chat"}
    }
  ],
  "fallback_strategy": ["http_429", "http_5xx"],
  "max_retries": 1,
  "retry_on_failure_within_ms": 3000,
  "balancer": {"algorithm": "chash", "hash_on": "header", "key": "x-user"},
  "timeout": 60000,
  "keepalive": true,
  "keepalive_timeout": 60000,
  "keepalive_pool": 30,
  "ssl_verify": true,
  "logging": {"summaries": true, "payloads": false}
}`

func TestParseMultiConfAPISIXDocsRoute(t *testing.T) {
	c := ParseMultiConf([]byte(apisixDocsRoute), balance.NewRegistry())
	if c.Err != nil {
		t.Fatalf("unexpected error: %v", c.Err)
	}
	if c.Plugin != MultiName {
		t.Errorf("Plugin = %q", c.Plugin)
	}
	if len(c.Instances) != 2 || c.Pool == nil {
		t.Fatalf("instances %d, pool %v", len(c.Instances), c.Pool)
	}
	for i, want := range []struct{ name, provider, model string }{
		{"openai-instance", "openai", "gpt-4"},
		{"deepseek-instance", "deepseek", "deepseek-chat"},
	} {
		in := c.Instances[i]
		if in.Name != want.name || in.ProviderName != want.provider || in.RouteModel != want.model || in.Provider == nil || in.health == nil {
			t.Errorf("instance %d = %+v, want %+v", i, in, want)
		}
	}
	ms := c.Pool.Members()
	if len(ms) != 2 || ms[0].Name != "openai-instance" || ms[0].Priority != 1 || ms[0].Weight != 8 ||
		ms[1].Name != "deepseek-instance" || ms[1].Priority != 0 || ms[1].Weight != 2 {
		t.Errorf("members = %+v", ms)
	}
	if ms[0].Health != c.Instances[0].health || ms[1].Health != c.Instances[1].health {
		t.Error("pool members and instances do not share their health")
	}
	if c.Instances[0].health == c.Instances[1].health {
		t.Error("two upstreams share one health")
	}
	if !c.Fallback.On429 || !c.Fallback.On5xx || c.Fallback.MaxRetries != 1 || c.Fallback.Within != 3*time.Second {
		t.Errorf("fallback = %+v", c.Fallback)
	}
	if c.Hash == nil || c.Hash.On != "header" || c.Hash.Key != "x-user" {
		t.Errorf("hash = %+v", c.Hash)
	}
	if c.Timeout != time.Minute || !c.SSLVerify || !c.LogSummaries || c.LogPayloads {
		t.Errorf("shared fields: %+v", c)
	}
	// chash: the pool sends one key to one instance.
	key := balance.HashKey("alice")
	first, _, err := c.Pool.Pick("", key, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 10; k++ {
		if i, _, _ := c.Pool.Pick("", key, 0, time.Now()); i != first {
			t.Fatalf("key moved from %d to %d", first, i)
		}
	}
}

func TestParseMultiConfValid(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		check func(t *testing.T, c *Conf)
	}{
		{"minimal", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}]}`, func(t *testing.T, c *Conf) {
			if c.Hash != nil || c.Fallback.On429 || c.Fallback.On5xx || c.Fallback.MaxRetries != -1 || c.Fallback.Within != 0 || c.Fallback.Statuses != nil {
				t.Errorf("defaults: hash %+v, fallback %+v", c.Hash, c.Fallback)
			}
			if c.Timeout != defaultTimeout || !c.Keepalive || !c.SSLVerify {
				t.Errorf("shared defaults: %+v", c)
			}
		}},
		{"health and rate limiting strategy", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"fallback_strategy":"instance_health_and_rate_limiting"}`, func(t *testing.T, c *Conf) {
			if c.Fallback.On429 || c.Fallback.On5xx {
				t.Errorf("fallback = %+v", c.Fallback)
			}
		}},
		{"strategy string http_429", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],"fallback_strategy":"http_429"}`, func(t *testing.T, c *Conf) {
			if !c.Fallback.On429 || c.Fallback.On5xx {
				t.Errorf("fallback = %+v", c.Fallback)
			}
		}},
		{"strategy list with rate_limiting", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"fallback_strategy":["rate_limiting","http_5xx"]}`, func(t *testing.T, c *Conf) {
			if c.Fallback.On429 || !c.Fallback.On5xx {
				t.Errorf("fallback = %+v", c.Fallback)
			}
		}},
		{"active checks are accepted", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH,
			"checks":{"active":{"type":"https","timeout":5,"http_path":"/v1/models","host":"api.openai.com",
			"req_headers":["User-Agent: curl"],"healthy":{"interval":2,"successes":1},"unhealthy":{"interval":1,"http_failures":3}}}}]}`, nil},
		{"model groups", `{"instances":[
			{"name":"gpt","provider":"openai","weight":1,"models":["gpt-4o","gpt-4o-mini"],AUTH},
			{"name":"ds","provider":"deepseek","weight":1,"models":["deepseek-chat"],AUTH},
			{"name":"rest","provider":"openai","weight":1,AUTH}]}`, func(t *testing.T, c *Conf) {
			ms := c.Pool.Members()
			if !reflect.DeepEqual(ms[0].Models, []string{"gpt-4o", "gpt-4o-mini"}) || !reflect.DeepEqual(ms[1].Models, []string{"deepseek-chat"}) || ms[2].Models != nil {
				t.Errorf("models: %q %q %q", ms[0].Models, ms[1].Models, ms[2].Models)
			}
			for model, want := range map[string]int{"gpt-4o-mini": 0, "deepseek-chat": 1, "llama": 2, "": 2} {
				if i, _, err := c.Pool.Pick(model, 0, 0, time.Now()); err != nil || i != want {
					t.Errorf("Pick(%q) = %d, %v; want %d", model, i, err, want)
				}
			}
		}},
		{"model groups only", `{"instances":[
			{"name":"gpt","provider":"openai","weight":1,"models":["gpt-4o"],AUTH},
			{"name":"ds","provider":"deepseek","weight":1,"models":["deepseek-chat"],AUTH}]}`, func(t *testing.T, c *Conf) {
			_, _, err := c.Pool.Pick("llama", 0, 0, time.Now())
			if um, ok := err.(*balance.UnknownModelError); !ok || !reflect.DeepEqual(um.Served, []string{"deepseek-chat", "gpt-4o"}) {
				t.Errorf("Pick(llama) err = %v", err)
			}
		}},
		{"roundrobin with weight 0 and negative priority", `{"instances":[
			{"name":"a","provider":"openai","weight":0,"priority":-5,AUTH},
			{"name":"b","provider":"openai","weight":3,"priority":-10,AUTH}],
			"balancer":{"algorithm":"roundrobin"}}`, func(t *testing.T, c *Conf) {
			if c.Hash != nil {
				t.Errorf("hash = %+v", c.Hash)
			}
			if i, _, err := c.Pool.Pick("", 0, 0, time.Now()); err != nil || i != 1 {
				t.Errorf("Pick = %d, %v", i, err)
			}
		}},
		{"chash on a variable by default", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"balancer":{"algorithm":"chash","key":"remote_addr"}}`, func(t *testing.T, c *Conf) {
			if c.Hash == nil || c.Hash.On != "vars" || c.Hash.Key != "remote_addr" {
				t.Errorf("hash = %+v", c.Hash)
			}
		}},
		{"chash on vars_combinations", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"balancer":{"algorithm":"chash","hash_on":"vars_combinations","key":"$remote_addr-$http_x_user"}}`, func(t *testing.T, c *Conf) {
			if c.Hash == nil || !reflect.DeepEqual(c.Hash.vars, []string{"remote_addr", "http_x_user"}) {
				t.Errorf("hash = %+v", c.Hash)
			}
		}},
		{"chash on a cookie", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"balancer":{"algorithm":"chash","hash_on":"cookie","key":"session"}}`, nil},
		{"chash on the consumer", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"balancer":{"algorithm":"chash","hash_on":"consumer"}}`, func(t *testing.T, c *Conf) {
			if c.Hash == nil || c.Hash.On != "consumer" {
				t.Errorf("hash = %+v", c.Hash)
			}
		}},
		{"fallback statuses", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}],
			"fallback_http_statuses":[401,402,599],"max_retries":0}`, func(t *testing.T, c *Conf) {
			if !reflect.DeepEqual(c.Fallback.Statuses, map[int]bool{401: true, 402: true, 599: true}) || c.Fallback.MaxRetries != 0 {
				t.Errorf("fallback = %+v", c.Fallback)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseMultiConf(multiConf(tt.conf), balance.NewRegistry())
			if c.Err != nil {
				t.Fatalf("unexpected error: %v", c.Err)
			}
			if c.Pool == nil || len(c.Instances) != len(c.Pool.Members()) {
				t.Fatalf("pool %v, %d instances", c.Pool, len(c.Instances))
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseMultiConfInvalid(t *testing.T) {
	one := `{"name":"a","provider":"openai","weight":1,AUTH}`
	var many []string
	for i := 0; i <= balance.MaxMembers; i++ {
		many = append(many, `{"name":"i`+strconv.Itoa(i)+`","provider":"openai","weight":1,AUTH}`)
	}
	tests := []struct {
		name      string
		conf      string
		wantField string
	}{
		{"not json", `{"instances":[` + one, "conf"},
		{"not an object", `[` + one + `]`, "conf"},
		{"instances missing", `{"fallback_strategy":"http_429"}`, "instances"},
		{"instances not an array", `{"instances":` + one + `}`, "instances"},
		{"instances empty", `{"instances":[]}`, "instances"},
		{"too many instances", `{"instances":[` + strings.Join(many, ",") + `]}`, "instances"},
		{"instances repeated", `{"instances":[` + one + `],"instances":[` + one + `]}`, "instances"},
		{"instance not an object", `{"instances":[` + one + `,"openai"]}`, "instances[1]"},
		{"duplicate names", `{"instances":[` + one + `,` + one + `]}`, "instances[1].name"},
		{"missing name", `{"instances":[{"provider":"openai","weight":1,AUTH}]}`, "instances[0].name"},
		{"empty name", `{"instances":[{"name":"","provider":"openai","weight":1,AUTH}]}`, "instances[0].name"},
		{"long name", `{"instances":[{"name":"` + strings.Repeat("n", 101) + `","provider":"openai","weight":1,AUTH}]}`, "instances[0].name"},
		{"missing weight", `{"instances":[{"name":"a","provider":"openai",AUTH}]}`, "instances[0].weight"},
		{"negative weight", `{"instances":[` + one + `,{"name":"b","provider":"openai","weight":-1,AUTH}]}`, "instances[1].weight"},
		{"fractional weight", `{"instances":[{"name":"a","provider":"openai","weight":1.5,AUTH}]}`, "instances[0].weight"},
		{"weight as string", `{"instances":[{"name":"a","provider":"openai","weight":"1",AUTH}]}`, "instances[0].weight"},
		{"every weight 0", `{"instances":[{"name":"a","provider":"openai","weight":0,AUTH},{"name":"b","provider":"deepseek","weight":0,AUTH}]}`, "instances"},
		{"fractional priority", `{"instances":[{"name":"a","provider":"openai","weight":1,"priority":0.5,AUTH}]}`, "instances[0].priority"},
		{"unknown provider", `{"instances":[` + one + `,{"name":"b","provider":"acme","weight":1,AUTH}]}`, "instances[1].provider"},
		{"missing provider", `{"instances":[{"name":"a","weight":1,AUTH}]}`, "instances[0].provider"},
		{"missing auth", `{"instances":[{"name":"a","provider":"openai","weight":1}]}`, "instances[0].auth"},
		{"unknown field in an instance", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH,"overide":{"endpoint":"http://x"}}]}`, "instances[0].overide"},
		{"duplicate key in an instance", `{"instances":[{"name":"a","provider":"openai","weight":1,"weight":2,AUTH}]}`, "instances[0].weight"},
		{"duplicate auth header", `{"instances":[{"name":"a","provider":"openai","weight":1,
			"auth":{"header":{"Authorization":"Bearer sk-secret","Authorization":"Bearer sk-secret-2"}}}]}`, "instances[0].auth.header.Authorization"},
		{"control character in auth header", `{"instances":[{"name":"a","provider":"openai","weight":1,
			"auth":{"header":{"Authorization":"Bearer sk-secret\u0001"}}}]}`, "instances[0].auth.header.Authorization"},
		{"bad endpoint", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH,"override":{"endpoint":"api.openai.com/v1"}}]}`, "instances[0].override.endpoint"},
		{"checks not an object", `{"instances":[{"name":"a","provider":"openai","weight":1,AUTH,"checks":true}]}`, "instances[0].checks"},
		{"unknown fallback strategy", `{"instances":[` + one + `],"fallback_strategy":"http_4xx"}`, "fallback_strategy"},
		{"unknown fallback strategy in list", `{"instances":[` + one + `],"fallback_strategy":["http_429","retry"]}`, "fallback_strategy"},
		{"fallback strategy not a string", `{"instances":[` + one + `],"fallback_strategy":429}`, "fallback_strategy"},
		{"fallback strategy list of numbers", `{"instances":[` + one + `],"fallback_strategy":[429]}`, "fallback_strategy"},
		{"fallback status 302", `{"instances":[` + one + `],"fallback_http_statuses":[401,302]}`, "fallback_http_statuses"},
		{"fallback status as string", `{"instances":[` + one + `],"fallback_http_statuses":["401"]}`, "fallback_http_statuses"},
		{"fallback status 600", `{"instances":[` + one + `],"fallback_http_statuses":[600]}`, "fallback_http_statuses"},
		{"fallback status fraction", `{"instances":[` + one + `],"fallback_http_statuses":[401.5]}`, "fallback_http_statuses"},
		{"fallback statuses not an array", `{"instances":[` + one + `],"fallback_http_statuses":401}`, "fallback_http_statuses"},
		{"balancer not an object", `{"instances":[` + one + `],"balancer":"chash"}`, "balancer"},
		{"balancer unknown field", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","key":"remote_addr","hash":"x"}}`, "balancer.hash"},
		{"semantic balancer", `{"instances":[` + one + `],"balancer":{"algorithm":"semantic"}}`, "balancer.algorithm"},
		{"random balancer", `{"instances":[` + one + `],"balancer":{"algorithm":"random"}}`, "balancer.algorithm"},
		{"algorithm not a string", `{"instances":[` + one + `],"balancer":{"algorithm":1}}`, "balancer.algorithm"},
		{"chash vars key with a dash", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","hash_on":"vars","key":"x-user"}}`, "balancer.key"},
		{"chash vars key with a dollar", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","hash_on":"vars","key":"$remote_addr"}}`, "balancer.key"},
		{"chash vars without key", `{"instances":[` + one + `],"balancer":{"algorithm":"chash"}}`, "balancer.key"},
		{"chash header key not a token", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","hash_on":"header","key":"x user"}}`, "balancer.key"},
		{"chash vars_combinations without variables", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","hash_on":"vars_combinations","key":"remote_addr"}}`, "balancer.key"},
		{"chash unknown hash_on", `{"instances":[` + one + `],"balancer":{"algorithm":"chash","hash_on":"ip","key":"remote_addr"}}`, "balancer.hash_on"},
		{"models not an array", `{"instances":[{"name":"a","provider":"openai","weight":1,"models":"gpt-4o",AUTH}]}`, "instances[0].models"},
		{"models empty", `{"instances":[{"name":"a","provider":"openai","weight":1,"models":[],AUTH}]}`, "instances[0].models"},
		{"models with an empty string", `{"instances":[` + one + `,{"name":"b","provider":"openai","weight":1,"models":["gpt-4o",""],AUTH}]}`, "instances[1].models"},
		{"models with a number", `{"instances":[{"name":"a","provider":"openai","weight":1,"models":[4],AUTH}]}`, "instances[0].models"},
		{"models duplicated", `{"instances":[{"name":"a","provider":"openai","weight":1,"models":["gpt-4o","gpt-4o"],AUTH}]}`, "instances[0].models"},
		{"max_retries -1", `{"instances":[` + one + `],"max_retries":-1}`, "max_retries"},
		{"max_retries fraction", `{"instances":[` + one + `],"max_retries":1.5}`, "max_retries"},
		{"retry window zero", `{"instances":[` + one + `],"retry_on_failure_within_ms":0}`, "retry_on_failure_within_ms"},
		{"provider at the top level", `{"provider":"openai","instances":[` + one + `]}`, "provider"},
		{"auth at the top level", `{AUTH,"instances":[` + one + `]}`, "auth"},
		{"misspelt top-level field", `{"instances":[` + one + `],"fallback_strategies":["http_429"]}`, "fallback_strategies"},
		{"bad shared field", `{"instances":[` + one + `],"timeout":0}`, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseMultiConf(multiConf(tt.conf), balance.NewRegistry())
			if c.Err == nil {
				t.Fatalf("accepted; want an error naming %q", tt.wantField)
			}
			if c.Err.Field != tt.wantField {
				t.Errorf("error names %q (%v), want %q", c.Err.Field, c.Err, tt.wantField)
			}
			if strings.Contains(c.Err.Error(), multiSecret) {
				t.Errorf("error quotes the secret: %v", c.Err)
			}
			if c.Instances != nil || c.Pool != nil {
				t.Errorf("invalid conf keeps instances %v, pool %v", c.Instances, c.Pool)
			}
		})
	}
}

func TestParseMultiConfSharesHealth(t *testing.T) {
	// Each conf has two instances; same says whether they must share a breaker.
	tests := []struct {
		name string
		a, b string
		same bool
		bug  string
	}{
		{"same upstream, other name, weight, options and field order",
			`{"name":"a","provider":"openai","weight":1,"options":{"model":"gpt-4o"},"auth":{"header":{"Authorization":"Bearer sk-secret"}}}`,
			`{"auth":{"header":{"Authorization":"Bearer sk-secret"}},"weight":7,"priority":3,"provider":"openai","name":"b","options":{"model":"gpt-4o-mini"}}`,
			true, ""},
		{"same endpoint override",
			`{"name":"a","provider":"openai","weight":1,"override":{"endpoint":"https://llm.example/v1/chat/completions"},AUTH}`,
			`{"name":"b","provider":"openai","weight":1,AUTH,"override":{"endpoint":"https://llm.example/v1/chat/completions"}}`,
			true, ""},
		{"auth header and query in another order",
			`{"name":"a","provider":"openai","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret"},"query":{"org":"o1"}}}`,
			`{"name":"b","provider":"openai","weight":1,"auth":{"query":{"org":"o1"},"header":{"Authorization":"Bearer sk-secret"}}}`,
			true, ""},
		{"auth headers in another order",
			`{"name":"a","provider":"openai","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret","OpenAI-Organization":"org-1"}}}`,
			`{"name":"b","provider":"openai","weight":1,"auth":{"header":{"OpenAI-Organization":"org-1","Authorization":"Bearer sk-secret"}}}`,
			true, ""},
		{"auth headers with other spacing",
			`{"name":"a","provider":"openai","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret"}}}`,
			`{"name":"b","provider":"openai","weight":1,"auth":{"header": { "Authorization" : "Bearer sk-secret" }}}`,
			true, ""},
		{"other key",
			`{"name":"a","provider":"openai","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret"}}}`,
			`{"name":"b","provider":"openai","weight":1,"auth":{"header":{"Authorization":"Bearer sk-secret-2"}}}`,
			false, ""},
		{"other endpoint",
			`{"name":"a","provider":"openai","weight":1,AUTH}`,
			`{"name":"b","provider":"openai","weight":1,AUTH,"override":{"endpoint":"https://llm.example/v1/chat/completions"}}`,
			false, ""},
		{"other provider, same key",
			`{"name":"a","provider":"openai","weight":1,AUTH}`,
			`{"name":"b","provider":"deepseek","weight":1,AUTH}`,
			false, ""},
		{"key in a query instead of a header",
			`{"name":"a","provider":"openai","weight":1,"auth":{"header":{"key":"sk-secret"}}}`,
			`{"name":"b","provider":"openai","weight":1,"auth":{"query":{"key":"sk-secret"}}}`,
			false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bug != "" {
				t.Skip("BUG: " + tt.bug)
			}
			reg := balance.NewRegistry()
			c := ParseMultiConf(multiConf(`{"instances":[`+tt.a+`,`+tt.b+`]}`), reg)
			if c.Err != nil {
				t.Fatal(c.Err)
			}
			if same := c.Instances[0].health == c.Instances[1].health; same != tt.same {
				t.Fatalf("instances share health: %v, want %v", same, tt.same)
			}
			// Across routes: another conf parsed with the same registry.
			d := ParseMultiConf(multiConf(`{"instances":[`+tt.b+`]}`), reg)
			if d.Err != nil {
				t.Fatal(d.Err)
			}
			if d.Instances[0].health != c.Instances[1].health {
				t.Fatal("the same upstream in another route has another health")
			}
			if same := d.Instances[0].health == c.Instances[0].health; same != tt.same {
				t.Fatalf("routes share health: %v, want %v", same, tt.same)
			}
		})
	}

	t.Run("registries do not share", func(t *testing.T) {
		conf := multiConf(`{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}]}`)
		c1, c2 := ParseMultiConf(conf, balance.NewRegistry()), ParseMultiConf(conf, balance.NewRegistry())
		if c1.Err != nil || c2.Err != nil {
			t.Fatal(c1.Err, c2.Err)
		}
		if c1.Instances[0].health == c2.Instances[0].health {
			t.Fatal("two registries share a health")
		}
	})
}

func TestFallbackMoves(t *testing.T) {
	type outcome struct {
		status    int
		transport bool
	}
	var (
		s429     = outcome{429, false}
		s500     = outcome{500, false}
		s502     = outcome{502, false}
		s503     = outcome{503, false}
		s599     = outcome{599, false}
		s400     = outcome{400, false}
		s401     = outcome{401, false}
		s402     = outcome{402, false}
		s404     = outcome{404, false}
		refused  = outcome{0, true}
		timedOut = outcome{504, true}
	)
	all := []outcome{s429, s500, s502, s503, s599, s400, s401, s402, s404, refused, timedOut}
	tests := []struct {
		name  string
		conf  string // the fields after instances
		moves []outcome
	}{
		{"none", ``, nil},
		{"health strategy", `,"fallback_strategy":"instance_health_and_rate_limiting"`, nil},
		{"http_429", `,"fallback_strategy":["http_429"]`, []outcome{s429}},
		{"http_429 as a string", `,"fallback_strategy":"http_429"`, []outcome{s429}},
		{"http_5xx", `,"fallback_strategy":["http_5xx"]`, []outcome{s500, s502, s503, s599, refused, timedOut}},
		{"both", `,"fallback_strategy":["http_429","http_5xx"]`, []outcome{s429, s500, s502, s503, s599, refused, timedOut}},
		{"statuses", `,"fallback_http_statuses":[401,402]`, []outcome{s401, s402}},
		{"statuses and http_429", `,"fallback_strategy":["rate_limiting","http_429"],"fallback_http_statuses":[401]`, []outcome{s429, s401}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseMultiConf(multiConf(`{"instances":[{"name":"a","provider":"openai","weight":1,AUTH}]`+tt.conf+`}`), balance.NewRegistry())
			if c.Err != nil {
				t.Fatal(c.Err)
			}
			want := map[outcome]bool{}
			for _, o := range tt.moves {
				want[o] = true
			}
			for _, o := range all {
				if got := c.Fallback.moves(o.status, o.transport); got != want[o] {
					t.Errorf("moves(%d, transport %v) = %v, want %v", o.status, o.transport, got, want[o])
				}
			}
		})
	}
}

package aiproxy

import (
	"testing"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
)

// FuzzParseConf: any conf text yields a Conf that is either valid (with a
// provider) or carries an error naming a field; it never panics.
func FuzzParseConf(f *testing.F) {
	for _, s := range []string{
		`{"provider":"openai","auth":{"header":{"Authorization":"Bearer k"}},"options":{"model":"gpt-4"}}`,
		`{"provider":"azure-openai","auth":{"header":{"api-key":"k"}},"override":{"endpoint":"https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"}}`,
		`{"provider":"vertex-ai","auth":{"gcp":{"service_account_json":"{}"}},"provider_conf":{"project_id":"p","region":"global"}}`,
		`{"provider":"openai","auth":{},"timeout":1.5,"logging":{"payloads":true}}`,
		`[]`, `{`, `{"provider":"openai","auth":{"query":{"key":"\u0000"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := ParseConf(in)
		if (c.Err == nil) != (len(c.Instances) == 1) {
			t.Fatalf("conf %q: err %v, instances %d", in, c.Err, len(c.Instances))
		}
		if c.Err != nil && c.Err.Field == "" {
			t.Fatalf("error names no field: %v", c.Err)
		}
	})
}

// FuzzParseLimitConf: any ai-rate-limiting or ai-proxy-multi conf text is
// either valid or names a field; never a panic.
func FuzzParseLimitConf(f *testing.F) {
	for _, s := range []string{
		`{"limit":300,"time_window":30,"limit_strategy":"prompt_tokens"}`,
		`{"rules":[{"count":60,"time_window":60,"key":"$consumer_name $http_x_team","header_prefix":"c"}]}`,
		`{"limit":0.5,"time_window":3600,"limit_strategy":"cost","prices":{"*":{"input":1,"output":2}}}`,
		`{"instances":[{"name":"a","limit":10,"time_window":1}],"policy":"redis","redis_host":"h"}`,
		`{"instances":[{"name":"a","provider":"openai","weight":1,"auth":{},"models":["m"]}],"balancer":{"algorithm":"chash","hash_on":"vars","key":"remote_addr"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lc := ParseLimitConf(in, nil, nil)
		if lc.Err != nil && lc.Err.Field == "" {
			t.Fatalf("limit conf error names no field: %v", lc.Err)
		}
		mc := ParseMultiConf(in, balance.NewRegistry())
		if (mc.Err == nil) != (mc.Pool != nil) || mc.Err != nil && mc.Err.Field == "" {
			t.Fatalf("multi conf %q: err %v", in, mc.Err)
		}
	})
}

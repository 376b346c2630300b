package aiproxy

import "testing"

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

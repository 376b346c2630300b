package aiproxy

import (
	"strings"
	"testing"
	"time"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name      string
		conf      string
		wantField string // "" = valid; else the field the error must name
	}{
		{"seed openai", `{"provider":"openai","auth":{"header":{"Authorization":"Bearer sk"}},"options":{"model":"gpt-4"}}`, ""},
		{"seed azure", `{"provider":"azure-openai","auth":{"header":{"api-key":"k"}},"options":{"model":"gpt-4"},"override":{"endpoint":"https://x.openai.azure.com/openai/deployments/gpt-4/chat/completions?api-version=2024-02-15-preview"}}`, ""},
		{"auth query only", `{"provider":"gemini","auth":{"query":{"key":"k"}}}`, ""},
		{"all limits", `{"provider":"openai","auth":{},"timeout":1000,"keepalive":false,"keepalive_timeout":1000,"keepalive_pool":2,"ssl_verify":false,"logging":{"summaries":true,"payloads":false},"max_req_body_size":10,"max_response_bytes":0,"max_stream_duration_ms":5}`, ""},
		{"not json", `{"provider":`, "conf"},
		{"not an object", `["openai"]`, "conf"},
		{"missing provider", `{"auth":{}}`, "provider"},
		{"empty provider", `{"provider":"","auth":{}}`, "provider"},
		{"provider not a string", `{"provider":1,"auth":{}}`, "provider"},
		{"unknown provider", `{"provider":"acme","auth":{}}`, "provider"},
		{"missing auth", `{"provider":"openai"}`, "auth"},
		{"auth not an object", `{"provider":"openai","auth":"Bearer x"}`, "auth"},
		{"header value not a string", `{"provider":"openai","auth":{"header":{"Authorization":1}}}`, "auth.header.Authorization"},
		{"header with line break", `{"provider":"openai","auth":{"header":{"Authorization":"Bearer a\r\nX: y"}}}`, "auth.header.Authorization"},
		{"query not an object", `{"provider":"openai","auth":{"query":"key=1"}}`, "auth.query"},
		{"options not an object", `{"provider":"openai","auth":{},"options":"gpt-4"}`, "options"},
		{"model not a string", `{"provider":"openai","auth":{},"options":{"model":4}}`, "options.model"},
		{"misspelt field", `{"provider":"openai","auth":{},"overide":{"endpoint":"http://x"}}`, "overide"},
		{"override not an object", `{"provider":"openai","auth":{},"override":"http://x"}`, "override"},
		{"endpoint not a URL", `{"provider":"openai","auth":{},"override":{"endpoint":"api.openai.com/v1"}}`, "override.endpoint"},
		{"endpoint with credentials", `{"provider":"openai","auth":{},"override":{"endpoint":"https://u:p@x/v1/chat/completions"}}`, "override.endpoint"},
		{"azure without endpoint", `{"provider":"azure-openai","auth":{"header":{"api-key":"k"}}}`, "override.endpoint"},
		{"compatible without endpoint", `{"provider":"openai-compatible","auth":{}}`, "override.endpoint"},
		{"timeout zero", `{"provider":"openai","auth":{},"timeout":0}`, "timeout"},
		{"timeout fraction", `{"provider":"openai","auth":{},"timeout":1.5}`, "timeout"},
		{"timeout string", `{"provider":"openai","auth":{},"timeout":"30s"}`, "timeout"},
		{"keepalive not bool", `{"provider":"openai","auth":{},"keepalive":"yes"}`, "keepalive"},
		{"keepalive_timeout too small", `{"provider":"openai","auth":{},"keepalive_timeout":999}`, "keepalive_timeout"},
		{"ssl_verify not bool", `{"provider":"openai","auth":{},"ssl_verify":0}`, "ssl_verify"},
		{"logging not an object", `{"provider":"openai","auth":{},"logging":true}`, "logging"},
		{"payloads not bool", `{"provider":"openai","auth":{},"logging":{"payloads":"on"}}`, "logging.payloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseConf([]byte(tt.conf))
			switch {
			case tt.wantField == "" && c.Err != nil:
				t.Fatalf("unexpected error: %v", c.Err)
			case tt.wantField == "" && len(c.Instances) != 1:
				t.Fatal("valid conf without provider")
			case tt.wantField != "" && c.Err == nil:
				t.Fatalf("accepted; want an error naming %q", tt.wantField)
			case tt.wantField != "" && c.Err.Field != tt.wantField:
				t.Fatalf("error names %q (%v), want %q", c.Err.Field, c.Err, tt.wantField)
			}
		})
	}
}

func TestParseConfDefaults(t *testing.T) {
	c := ParseConf([]byte(`{"provider":"openai","auth":{}}`))
	if c.Err != nil {
		t.Fatal(c.Err)
	}
	if c.Timeout != 30*time.Second || !c.Keepalive || c.KeepaliveTimeout != time.Minute ||
		c.KeepalivePool != 30 || !c.SSLVerify || c.MaxReqBodySize != 16<<20 || c.LogPayloads {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestParseConfErrorNeverQuotesSecrets(t *testing.T) {
	c := ParseConf([]byte(`{"provider":"openai","auth":{"header":{"Authorization":"Bearer sk-secret"}},"timeout":-1}`))
	if c.Err == nil || strings.Contains(c.Err.Error(), "sk-secret") {
		t.Fatalf("err = %v", c.Err)
	}
}

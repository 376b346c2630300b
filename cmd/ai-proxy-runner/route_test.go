package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestConvertRoute(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		upID    string
		wantErr string            // substring; "" = must succeed
		want    map[string]string // gjson path on the output -> raw JSON expected
	}{
		{
			name: "seed route with doc annotations",
			in: `{"id":"r1","uri":"/anything", // Annotate 0
			"plugins":{"ai-proxy":{
			// Annotate 1
			"provider":"openai","auth":{"header":{"Authorization":"Bearer sk-a//b"}},"options":{"model":"gpt-4"}}}}`,
			upID: "ai-proxy-relay",
			want: map[string]string{
				"id":                                      `"r1"`,
				"upstream_id":                             `"ai-proxy-relay"`,
				`plugins.ext-plugin-pre-req.conf.#`:       `1`,
				`plugins.ext-plugin-pre-req.conf.0.name`:  `"ai-proxy"`,
				`plugins.ext-plugin-pre-req.conf.0.value`: `"{\"provider\":\"openai\",\"auth\":{\"header\":{\"Authorization\":\"Bearer sk-a//b\"}},\"options\":{\"model\":\"gpt-4\"}}"`,
			},
		},
		{
			name: "other plugins, vars and an existing ext-plugin chain are kept; inline upstream replaced",
			in: `{"uri":"/x","vars":[["post_arg.model","==","openai"]],"upstream":{"nodes":{"a:1":1}},
			"plugins":{"key-auth":{},"ext-plugin-pre-req":{"conf":[{"name":"other","value":"{}"}]},"ai-proxy":{"provider":"deepseek","auth":{}}}}`,
			upID: "relay-2",
			want: map[string]string{
				"vars":                                   `[["post_arg.model","==","openai"]]`,
				"plugins.key-auth":                       `{}`,
				"upstream":                               ``,
				"upstream_id":                            `"relay-2"`,
				`plugins.ext-plugin-pre-req.conf.0.name`: `"other"`,
				`plugins.ext-plugin-pre-req.conf.1.name`: `"ai-proxy"`,
				`plugins.ai-proxy`:                       ``,
			},
		},
		{
			name: "ai-proxy-multi",
			in:   `{"uri":"/m","plugins":{"ai-proxy-multi":{"instances":[{"name":"a","provider":"openai","weight":1,"auth":{}}]}}}`,
			upID: "ai-proxy-relay",
			want: map[string]string{
				`plugins.ext-plugin-pre-req.conf.0.name`:  `"ai-proxy-multi"`,
				`plugins.ext-plugin-pre-req.conf.0.value`: `"{\"instances\":[{\"name\":\"a\",\"provider\":\"openai\",\"weight\":1,\"auth\":{}}]}"`,
				`plugins.ai-proxy-multi`:                  ``,
			},
		},
		{name: "invalid ai-proxy-multi conf", in: `{"plugins":{"ai-proxy-multi":{"instances":[{"name":"a","provider":"openai","auth":{}}]}}}`, upID: "u", wantErr: "plugins.ai-proxy-multi: instances[0].weight: is required"},
		{name: "both plugins", in: `{"plugins":{"ai-proxy":{"provider":"openai","auth":{}},"ai-proxy-multi":{}}}`, upID: "u", wantErr: "both ai-proxy and ai-proxy-multi"},
		{name: "not json", in: `{"uri":`, upID: "u", wantErr: "not valid JSON"},
		{name: "not an object", in: `[1]`, upID: "u", wantErr: "JSON object"},
		{name: "no ai-proxy plugin", in: `{"plugins":{"key-auth":{}}}`, upID: "u", wantErr: `"ai-proxy"`},
		{name: "invalid ai-proxy conf", in: `{"plugins":{"ai-proxy":{"provider":"openai"}}}`, upID: "u", wantErr: "plugins.ai-proxy: auth: is required"},
		{name: "unknown provider", in: `{"plugins":{"ai-proxy":{"provider":"acme","auth":{}}}}`, upID: "u", wantErr: "unknown provider"},
		{name: "empty upstream id", in: `{"plugins":{"ai-proxy":{"provider":"openai","auth":{}}}}`, upID: "", wantErr: "--upstream-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := convertRoute([]byte(tt.in), tt.upID)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for path, raw := range tt.want {
				if got := gjson.GetBytes(out, path).Raw; compact(got) != raw {
					t.Errorf("%s = %s, want %s", path, got, raw)
				}
			}
		})
	}
}

func compact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

// conf/routes/*.json are generated from conf/routes/seed/ by `make routes`;
// this keeps the committed files in step with the converter.
func TestRouteFilesInSync(t *testing.T) {
	seeds, _ := filepath.Glob("../../conf/routes/seed/*.json")
	if len(seeds) == 0 {
		t.Fatal("no seed routes found")
	}
	for _, seed := range seeds {
		in, _ := os.ReadFile(seed)
		want, err := convertRoute(in, defaultUpstreamID)
		if err != nil {
			t.Fatalf("%s: %v", seed, err)
		}
		got, err := os.ReadFile(filepath.Join("../../conf/routes", filepath.Base(seed)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run `make routes`", filepath.Base(seed))
		}
	}
}

func TestRouteCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	code := route([]string{"--upstream-id", "x"}, strings.NewReader(`{"plugins":{"ai-proxy":{"provider":"openai","auth":{}}}}`), &out, &errOut)
	if code != 0 || gjson.Get(out.String(), "upstream_id").String() != "x" {
		t.Fatalf("code %d out %s err %s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := route(nil, strings.NewReader(`nope`), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "not valid JSON") || out.Len() != 0 {
		t.Fatalf("bad input: code %d out %q err %q", code, out.String(), errOut.String())
	}
}

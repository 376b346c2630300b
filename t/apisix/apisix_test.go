package apisix

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFrame(&buf, rpcHTTPReqCall, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes()[:4]; !bytes.Equal(got, []byte{2, 0, 0, 5}) {
		t.Fatalf("header % x", got)
	}
	ty, payload, err := readFrame(&buf)
	if err != nil || ty != 2 || string(payload) != "hello" {
		t.Fatalf("%d %q %v", ty, payload, err)
	}
	if _, _, err := readFrame(bytes.NewReader([]byte{1, 0})); !errors.Is(err, errHeaderShort) {
		t.Errorf("short header: %v", err)
	}
	if _, _, err := readFrame(bytes.NewReader([]byte{1, 0, 0, 9, 'x'})); !errors.Is(err, errDataTruncated) {
		t.Errorf("truncated: %v", err)
	}
	// Only 24 bits are length: a runner cannot claim more than 16 MiB.
	if _, _, err := readFrame(bytes.NewReader([]byte{0xff, 0, 0, 0})); err != nil {
		t.Errorf("type byte read as length: %v", err)
	}
	if err := writeFrame(&buf, 1, make([]byte, maxPayload+1)); err == nil {
		t.Error("16 MiB + 1 accepted")
	}
}

func TestEscapeURI(t *testing.T) {
	for in, want := range map[string]string{"/a b": "/a%20b", "/p?a=2": "/p%3Fa=2", "/%2F": "/%252F", "/é": "/%C3%A9", "/ok-_.~!$&'()*+,;=:@": "/ok-_.~!$&'()*+,;=:@"} {
		if got := escapeURI(in); got != want {
			t.Errorf("escapeURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExpr(t *testing.T) {
	vars := map[string]any{"post_arg.model": "openai", "n": 0.5, "flag": true, "list": []any{"image_url", "text"}}
	lookup := func(k string) any { return vars[k] }
	tests := []struct {
		expr string
		want bool
	}{
		{`[["post_arg.model","==","openai"]]`, true},
		{`[["post_arg.model","==","deepseek"]]`, false},
		{`[["post_arg.model","~=","deepseek"]]`, true},
		{`[["post_arg.missing","==","openai"]]`, false},
		{`[["n","==",0.5]]`, true},
		{`[["n","==","0.5"]]`, false},
		{`[["n",">",0.4],["n","<=",0.5]]`, true},
		{`[["flag","==","true"]]`, false},
		{`[["post_arg.model","~~","^open"]]`, true},
		{`[["post_arg.model","~*","^OPEN"]]`, true},
		{`[["post_arg.model","in",["a","openai"]]]`, true},
		{`[["list","has","image_url"]]`, true},
		{`[["post_arg.model","!","==","openai"]]`, false},
		{`["OR",["post_arg.model","==","x"],["n","==",0.5]]`, true},
		{`["!AND",["post_arg.model","==","openai"],["n","==",0.5]]`, false},
	}
	for _, tt := range tests {
		var e []any
		if err := json.Unmarshal([]byte(tt.expr), &e); err != nil {
			t.Fatal(err)
		}
		got, err := evalExpr(e, lookup)
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.expr, got, err, tt.want)
		}
	}
	if _, err := evalExpr([]any{[]any{"a", "bogus", "b"}}, lookup); err == nil {
		t.Error("unknown operator accepted")
	}
}

func TestPostArg(t *testing.T) {
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	body := []byte(`{"model":{"name":"openai"},"n":2,"messages":[{"content":[{"type":"image_url"}]}]}`)
	if v := postArg(r, body, "model.name"); v != "openai" {
		t.Errorf("nested: %v", v)
	}
	if v := postArg(r, body, "n"); v != 2.0 {
		t.Errorf("number: %v", v)
	}
	if v := postArg(r, body, "messages.0"); v != nil {
		t.Errorf("array by dot form must be nil: %v", v)
	}
	if v, _ := postArg(r, body, "messages[*].content[*].type").([]any); len(v) != 1 || v[0] != "image_url" {
		t.Errorf("jsonpath: %v", v)
	}
	r.Header.Set("Content-Type", "text/plain")
	if v := postArg(r, body, "n"); v != nil {
		t.Errorf("non-JSON content type: %v", v)
	}
}

func TestApplyRewrite(t *testing.T) {
	st := &reqState{header: map[string][]string{"X-Old": {"1"}, "Authorization": {"a"}}, args: url.Values{"c": {"foo"}, "d": {"bar"}}, respHeader: map[string][]string{}}
	applyRewrite(st, &action{
		path:        strp("/new path"),
		headers:     []entry{{name: "x-old"}, {name: "Host", value: strp("h")}, {name: "X-Ticket", value: strp("t")}},
		args:        []entry{{name: "a", value: strp("foo")}, {name: "d"}, {name: "c", value: strp("bar")}, {name: "a", value: strp("bar")}},
		respHeaders: []entry{{name: "Content-Type", value: strp("x")}, {name: "X-Resp", value: strp("1")}, {name: "x-resp", value: strp("2")}},
	})
	if st.upstreamPath != "/new%20path" || st.host != "h" || st.header.Get("X-Old") != "" || st.header.Get("X-Ticket") != "t" {
		t.Errorf("path/headers: %+v", st)
	}
	if got := st.args.Encode(); got != "a=foo&a=bar&c=bar" {
		t.Errorf("args %s", got)
	}
	if st.respHeader.Get("Content-Type") != "" || strings.Join(st.respHeader.Values("X-Resp"), ",") != "1,2" {
		t.Errorf("resp headers %v", st.respHeader)
	}
}

func TestParseRoute(t *testing.T) {
	bad := map[string]string{
		`{"uri":"/a","plugins":{"ai-proxy":{}},"upstream_id":"u"}`:                                                  "unknown plugin [ai-proxy]",
		`{"uri":"/a","plugins":{"ext-plugin-pre-req":{"conf":[]}},"upstream_id":"u"}`:                               "at least 1 items",
		`{"uri":"/a","plugins":{"ext-plugin-pre-req":{"conf":[{"value":"x"}]}},"upstream_id":"u"}`:                  `property "name" is required`,
		`{"uri":"/a","plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy","value":{}}]}},"upstream_id":"u"}`: `property "value" is required`,
		`{"uri":"/a"}`: "missing upstream",
		`{"uri":"/a","vars":[["x","bogus","y"]],"upstream_id":"u"}`: "failed to validate the 'vars' expression",
		`{"uri":`: "invalid request body",
	}
	for in, want := range bad {
		if _, err := parseRoute("1", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	rt, err := parseRoute("", []byte(`{"id":"r","uri":"/p/*","plugins":{"ext-plugin-pre-req":{}},"upstream":{"nodes":[{"host":"127.0.0.1","port":80,"weight":1}]}}`))
	if err != nil || rt.id != "r" || rt.plugins[0].conf != nil || rt.upstream.nodes[0] != "127.0.0.1:80" {
		t.Fatalf("%+v %v", rt, err)
	}
	r := httptest.NewRequest("POST", "/p/x", nil)
	if ok, _ := rt.matches(r, func(string) any { return nil }); !ok {
		t.Error("prefix uri did not match")
	}
}

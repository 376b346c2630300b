package providers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// applyOptions replaces, appends and keeps, and its output decodes to the
// client's body with the options set.
func TestApplyOptions(t *testing.T) {
	opts := []Option{{Key: "model", Raw: []byte(`"gpt-4"`)}, {Key: "max_tokens", Raw: []byte(`50`)}, {Key: "a.b", Raw: []byte(`{"x":[1]}`)}}
	for _, body := range []string{
		`{}`,
		` { } `,
		`{"model":"x"}`,
		`{"messages":[{"role":"user","content":"}\"{"}],"model":"x","max_tokens":100000}`,
		`{"m\u006fdel":"x","stream":true}`,
		"{\n  \"model\" : null ,\n  \"n\": 1\n}\n",
	} {
		out, err := applyOptions([]byte(body), opts)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		checkApplied(t, body, out, opts)
	}
}

func checkApplied(t *testing.T, body string, out []byte, opts []Option) {
	t.Helper()
	var want, got map[string]any
	if err := decode([]byte(body), &want); err != nil {
		return // not a body the relay would pass on
	}
	if err := decode(out, &got); err != nil {
		t.Fatalf("%s -> not JSON: %s", body, out)
	}
	for _, o := range opts {
		var v any
		_ = decode(o.Raw, &v)
		want[o.Key] = v
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("%s ->\n got %s\nwant %v", body, out, want)
	}
}

// decode keeps numbers as written (1E700 is valid JSON, not a float64).
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

func FuzzApplyOptions(f *testing.F) {
	f.Add(`{"model":"x","messages":[]}`, "model", `"gpt-4"`)
	f.Add(`{}`, "max_tokens", `5`)
	f.Add(`{"a":{"b":1}}`, "a", `[1,2]`)
	f.Fuzz(func(t *testing.T, body, key, raw string) {
		// Option keys come from the route's JSON conf: valid UTF-8.
		if checkObject([]byte(body)) != nil || !json.Valid([]byte(raw)) || !utf8.ValidString(key) {
			return
		}
		opts := []Option{{Key: key, Raw: []byte(raw)}}
		out, err := applyOptions([]byte(body), opts)
		if err != nil {
			t.Fatal(err)
		}
		checkApplied(t, body, out, opts)
	})
}

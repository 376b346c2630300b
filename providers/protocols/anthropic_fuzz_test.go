package protocols

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAnthropic feeds arbitrary bytes to every reader of the codec: client
// requests, provider answers and provider streams are all outside the
// gateway's control. None may panic; what they accept must translate into
// output an Anthropic client or provider accepts.
func FuzzAnthropic(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "anthropic", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{"messages":[{"role":"user","content":""}]}`,
		`{"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"x"}]}],"thinking":{"type":"enabled","budget_tokens":1}}`,
		`{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a/b","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}]}`,
		`{"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"\u2028"},"usage":{"input_tokens":-5}}`,
		`{"type":"content_block_start","index":-1,"content_block":{"type":"tool_use","input":"x"}}`,
		`{"type":"content_block_delta","index":-1,"delta":{"type":"input_json_delta","partial_json":"\ud800"}}`,
		"event: error\ndata: {\"error\":5}\n\n",
		`{"content":[{"type":"tool_use","input":[1]}],"usage":{"input_tokens":1e3}}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		var pe *Error
		if r, err := Anthropic.DecodeRequest(body); err == nil {
			// What a client may send reaches the provider, or is refused
			// as the provider would refuse it.
			out, err := Anthropic.EncodeRequest(r)
			if err != nil {
				if !errors.As(err, &pe) {
					t.Fatalf("encode error %T is not a *Error", err)
				}
			} else if _, err := Anthropic.DecodeRequest(out); err != nil {
				t.Fatalf("encoded request does not decode: %v\n%s", err, out)
			}
		} else if !errors.As(err, &pe) {
			t.Fatalf("request error %T is not a *Error", err)
		}

		if r, err := Anthropic.DecodeResponse(body); err == nil {
			out, err := Anthropic.EncodeResponse(r)
			if err != nil || !json.Valid(out) {
				t.Fatalf("decoded answer encodes badly: %v\n%s", err, out)
			}
			if _, err := Anthropic.DecodeResponse(out); err != nil {
				t.Fatalf("encoded answer does not decode: %v\n%s", err, out)
			}
		}
		_ = Anthropic.ErrorMessage(body)

		// The body as an SSE stream, then as single events under every
		// name, through the stream encoder, whose every event must be
		// JSON.
		dec := Anthropic.NewDecoder()
		var ds []Delta
		for _, ev := range anthParseSSE(body) {
			ds, _, _ = dec.Event(ds, ev.name, ev.data)
		}
		for _, name := range []string{"", "message_start", "content_block_start", "content_block_delta", "message_delta", "error", "ping"} {
			ds, _, _ = dec.Event(ds, name, body)
		}
		enc := Anthropic.NewEncoder(&Request{Model: string(body)})
		var out []byte
		for i := range ds {
			out = enc.Delta(out, &ds[i])
		}
		out = enc.End(out)
		events := anthParseSSE(out)
		if len(events) < 4 || events[0].name != "message_start" || events[len(events)-1].name != "message_stop" {
			t.Fatalf("stream does not open and close:\n%s", out)
		}
		for _, ev := range events {
			if !json.Valid(ev.data) {
				t.Fatalf("%s event is not JSON: %s", ev.name, ev.data)
			}
		}
		if bytes.Contains(out, []byte("\n\n\n")) {
			t.Fatalf("empty event in stream:\n%s", out)
		}

		s := string(body)
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Fatalf("string %q encodes to invalid JSON: %v", s, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if back != want {
			t.Fatalf("string %q reads back as %q, want %q", s, back, want)
		}
	})
}

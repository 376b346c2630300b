package protocols

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenAIChat feeds arbitrary bytes to every reader of the codec, which
// sees client and provider bodies the gateway does not control. None may
// panic, and whatever they accept must translate into valid output.
func FuzzOpenAIChat(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "openai_chat", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":"data:;base64,"}]}]}`,
		`{"choices":[{"delta":{"tool_calls":[{"index":-5,"function":{"arguments":{}}}]}}],"usage":{}}`,
		`[{"error":{"message":"x"}}]`,
		"data: [DONE]",
		`{"error":null,"choices":[{"index":0,"message":{"content":[{"type":"text","text":"\u2028"}]}}]}`,
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := OpenAIChat.DecodeRequest(body); err == nil {
			// What a client may send must reach the provider.
			out, err := OpenAIChat.EncodeRequest(r)
			if err != nil {
				t.Fatalf("decoded request does not encode: %v", err)
			}
			if _, err := OpenAIChat.DecodeRequest(out); err != nil {
				t.Fatalf("encoded request does not decode: %v\n%s", err, out)
			}
		} else if _, ok := err.(*Error); !ok {
			t.Fatalf("request error %T is not a *Error", err)
		}

		if r, err := OpenAIChat.DecodeResponse(body); err == nil {
			out, err := OpenAIChat.EncodeResponse(r)
			if err != nil || !json.Valid(out) {
				t.Fatalf("decoded answer encodes badly: %v\n%s", err, out)
			}
		}
		_ = OpenAIChat.ErrorMessage(body)

		// The whole body as one event, then each line as one, through the
		// stream encoder, whose every data line must be JSON.
		dec := OpenAIChat.NewDecoder()
		enc := OpenAIChat.NewEncoder(&Request{StreamUsage: true})
		var ds []Delta
		ds, _, _ = dec.Event(ds, "", body)
		for _, line := range bytes.Split(body, []byte("\n")) {
			ds, _, _ = dec.Event(ds, "", bytes.TrimPrefix(line, []byte("data:")))
		}
		var out []byte
		for i := range ds {
			out = enc.Delta(out, &ds[i])
		}
		out = enc.End(out)
		for _, ev := range bytes.Split(out, []byte("\n\n")) {
			data, ok := bytes.CutPrefix(ev, []byte("data: "))
			if !ok || string(data) == "[DONE]" {
				continue
			}
			if !json.Valid(data) {
				t.Fatalf("stream chunk is not JSON: %s", data)
			}
		}
	})
}

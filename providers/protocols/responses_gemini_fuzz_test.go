package protocols

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzResponsesGemini feeds arbitrary bytes to every reader of the two
// codecs, and what they accept on to the writers across the hub: a Responses
// request becomes a Gemini request, a Gemini answer and stream a Responses
// answer and stream. None may panic.
func FuzzResponsesGemini(f *testing.F) {
	for _, dir := range []string{"testdata/responses", "testdata/gemini"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	for _, s := range []string{
		`{"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"data:;base64,"}]}]}`,
		`{"input":"x","tools":[{"type":"function","name":"f","parameters":null}],"tool_choice":{"type":"allowed_tools","tools":[]}}`,
		`{"candidates":[{"content":{"parts":[{"thought":true,"thoughtSignature":"s"},{"functionCall":{"name":"f","args":[1]}}]}}]}`,
		`{"candidates":[],"promptFeedback":{"blockReason":"OTHER"}}`,
		`[{"error":{"code":"x"}}]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if req, err := OpenAIResponses.DecodeRequest(data); err == nil {
			_, _ = Gemini.EncodeRequest(req)
			enc := OpenAIResponses.NewEncoder(req)
			enc.End(enc.Delta(nil, &Delta{Text: "x"}))
		}
		if resp, err := Gemini.DecodeResponse(data); err == nil {
			if _, err := OpenAIResponses.EncodeResponse(resp); err != nil {
				t.Fatalf("encoding a decoded answer: %v", err)
			}
		}
		_ = Gemini.ErrorMessage(data)

		dec := Gemini.NewDecoder()
		enc := OpenAIResponses.NewEncoder(&Request{})
		var out []byte
		for range 2 {
			ds, _, _ := dec.Event(nil, "", data)
			for i := range ds {
				out = enc.Delta(out, &ds[i])
			}
		}
		enc.End(out)
	})
}

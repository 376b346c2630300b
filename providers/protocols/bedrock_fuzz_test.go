package protocols

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// FuzzBedrock feeds arbitrary bytes to every Converse decoding path (whole
// answers, stream events of each name, error bodies) and arbitrary text to
// the encoder. Nothing may panic; what is accepted must be well formed:
// tool arguments and encoded bodies are JSON, tool indexes count from 0.
func FuzzBedrock(f *testing.F) {
	for _, name := range []string{"response_tool_use.json", "response_text.json", "error_throttling.json"} {
		if b, err := os.ReadFile("testdata/bedrock/" + name); err == nil {
			f.Add("metadata", b)
		}
	}
	f.Add("contentBlockStart", []byte(`{"contentBlockIndex":2,"start":{"toolUse":{"name":"f","toolUseId":"t"}}}`))
	f.Add("contentBlockDelta", []byte(`{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"a\":"}}}`))
	f.Add("contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"s"}}}`))
	f.Add("messageStop", []byte(`{"stopReason":"tool_use"}`))
	f.Add("exception:throttlingException", []byte(`{"message":"slow down"}`))
	f.Add("metadata", []byte(`{"usage":{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":3}}`))
	f.Add("", []byte(`{"output":{"message":{"content":[{"toolUse":{"toolUseId":"x","name":"f","input":[1]}}]}}}`))

	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if r, err := BedrockConverse.DecodeResponse(data); err == nil {
			for _, tc := range r.ToolCalls {
				if !json.Valid([]byte(tc.Arguments)) {
					t.Fatalf("tool arguments %q are not JSON", tc.Arguments)
				}
			}
		}
		_ = BedrockConverse.ErrorMessage(data)

		dec := BedrockConverse.NewDecoder()
		var ds []Delta
		for _, n := range []string{"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", name, "metadata"} {
			var err error
			ds, _, err = dec.Event(ds, n, data)
			var e *Error
			if err != nil && errors.As(err, &e) && (e.Status < 400 || e.Status > 599) {
				t.Fatalf("exception status %d", e.Status)
			}
		}
		for _, d := range ds {
			if d.Tool != nil && d.Tool.Index < 0 {
				t.Fatalf("tool index %d", d.Tool.Index)
			}
		}

		text := string(data)
		req := &Request{
			Messages: []Message{
				{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: name}}},
				{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: text}, {Kind: PartImage, URL: "data:" + name + ";base64," + text}}},
				{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: text, Signature: name}}, ToolCalls: []ToolCall{{ID: name, Name: name, Arguments: text}}},
				{Role: RoleTool, ToolCallID: name, Parts: []Part{{Kind: PartText, Text: text}}},
			},
			Tools:  []Tool{{Name: name, Parameters: data}},
			Format: &Format{Kind: FormatJSONSchema, Name: name, Schema: data},
		}
		body, err := BedrockConverse.EncodeRequest(req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("encode error is not an *Error: %v", err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("encoded body is not JSON: %s", body)
		}
	})
}

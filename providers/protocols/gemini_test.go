package protocols

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// gemTJSONEqual compares two JSON texts by value.
func gemTJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want is not JSON: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Fatalf("got\n%s\nwant\n%s", gi, wi)
	}
}

func gemTFullRequest() *Request {
	return &Request{
		Model: "gemini-2.5-flash",
		Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "You are terse."}}},
			{Role: RoleUser, Parts: []Part{
				{Kind: PartText, Text: "What is in these?"},
				{Kind: PartImage, URL: "https://example.com/cat.PNG?size=large"},
				{Kind: PartImage, MediaType: "image/webp", Data: "UklGRg=="},
				{Kind: PartImage, URL: "gs://bucket/photo"},
			}},
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Use tools."}}},
			{Role: RoleAssistant,
				Parts: []Part{{Kind: PartText, Text: "Checking."}, {Kind: PartThinking, Signature: "c2lnLWZj"}},
				ToolCalls: []ToolCall{
					{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
					{ID: "call_b", Name: "get_time", Arguments: ""},
				}},
			{Role: RoleTool, ToolCallID: "call_a", Parts: []Part{{Kind: PartText, Text: "18C"}}},
			{Role: RoleTool, ToolCallID: "call_b", Parts: []Part{{Kind: PartText, Text: `{"time":"12:00"}`}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Thanks"}}},
		},
		MaxTokens:   1024,
		Temperature: respTPtr(0.3),
		TopP:        respTPtr(0.8),
		TopK:        respTPtr(40),
		Stop:        []string{"END"},
		Stream:      true,
		Tools: []Tool{
			{Name: "get_weather", Description: "Weather for a city",
				Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`)},
			{Name: "get_time"},
		},
		ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "get_weather"},
		Format: &Format{Kind: FormatJSONSchema, Name: "answer", Strict: true,
			Schema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`)},
		Reasoning: &Reasoning{Effort: "low"},
		User:      "u-1",
	}
}

func TestGeminiEncodeRequestFull(t *testing.T) {
	got, err := Gemini.EncodeRequest(gemTFullRequest())
	if err != nil {
		t.Fatal(err)
	}
	gemTJSONEqual(t, got, respTRead(t, "gemini/request_full.json"))
}

func TestGeminiEncodeRequestMappings(t *testing.T) {
	user := Message{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Hi"}}}
	call := Message{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: `{}`}}}
	tools := []Tool{{Name: "f"}}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"minimal: no model, no stream, no config", Request{Model: "gemini-2.5-pro", Stream: true, Messages: []Message{user}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}`},
		{"multi-turn", Request{Messages: []Message{user,
			{Role: RoleAssistant, Parts: []Part{{Kind: PartText, Text: "Hello"}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Again"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"Hello"}]},{"role":"user","parts":[{"text":"Again"}]}]}`},
		{"tool choice auto", Request{Messages: []Message{user}, Tools: tools, ToolChoice: &ToolChoice{Mode: ToolAuto}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}],"toolConfig":{"functionCallingConfig":{"mode":"AUTO"}}}`},
		{"tool choice none", Request{Messages: []Message{user}, Tools: tools, ToolChoice: &ToolChoice{Mode: ToolNone}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}],"toolConfig":{"functionCallingConfig":{"mode":"NONE"}}}`},
		{"tool choice required", Request{Messages: []Message{user}, Tools: tools, ToolChoice: &ToolChoice{Mode: ToolRequired}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY"}}}`},
		{"tool choice without tools", Request{Messages: []Message{user}, ToolChoice: &ToolChoice{Mode: ToolNone}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}`},
		{"json mode", Request{Messages: []Message{user}, Format: &Format{Kind: FormatJSON}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"generationConfig":{"responseMimeType":"application/json"}}`},
		{"reasoning budget", Request{Messages: []Message{user}, Reasoning: &Reasoning{BudgetTokens: 5000}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":5000,"includeThoughts":true}}}`},
		{"reasoning of unknown effort keeps Gemini's budget", Request{Messages: []Message{user}, Reasoning: &Reasoning{Effort: "dynamic"}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true}}}`},
		{"stop sequences", Request{Messages: []Message{user}, Stop: []string{"a", "b"}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]}],"generationConfig":{"stopSequences":["a","b"]}}`},
		{"tool error", Request{Messages: []Message{user, call, {Role: RoleTool, ToolCallID: "c1", ToolError: true, Parts: []Part{{Kind: PartText, Text: "boom"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},
			  {"role":"user","parts":[{"functionResponse":{"name":"f","response":{"error":"boom"}}}]}]}`},
		{"tool result with an image, then user text", Request{Messages: []Message{user, call,
			{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "see"}, {Kind: PartImage, URL: "data:image/png;base64,AAA="}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "and?"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},
			  {"role":"user","parts":[{"functionResponse":{"name":"f","response":{"content":"see"}}},{"inlineData":{"mimeType":"image/png","data":"AAA="}},{"text":"and?"}]}]}`},
		{"unsigned thinking is dropped, a trailing signature rides the last part", Request{Messages: []Message{user,
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "hmm"}, {Kind: PartText, Text: "Hello"}, {Kind: PartThinking, Signature: "s1"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"Hello","thoughtSignature":"s1"}]}]}`},
		{"a signature alone is an empty text part", Request{Messages: []Message{user,
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "plan", Signature: "s2"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"","thoughtSignature":"s2"}]}]}`},
		{"an assistant turn with only unsigned thinking vanishes", Request{Messages: []Message{user,
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "plan"}}}, {Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Go"}}}}},
			`{"contents":[{"role":"user","parts":[{"text":"Hi"},{"text":"Go"}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Gemini.EncodeRequest(&tt.req)
			if err != nil {
				t.Fatal(err)
			}
			gemTJSONEqual(t, got, []byte(tt.want))
		})
	}
}

func TestGeminiEncodeRequestRefusals(t *testing.T) {
	user := Message{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Hi"}}}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"no messages", Request{}, "at least one"},
		{"only system", Request{Messages: []Message{{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "x"}}}}}, "at least one"},
		{"orphan tool result", Request{Messages: []Message{user, {Role: RoleTool, ToolCallID: "nope", Parts: []Part{{Kind: PartText, Text: "r"}}}}}, `"nope"`},
		{"arguments not an object", Request{Messages: []Message{user, {Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c", Name: "f", Arguments: `[1]`}}}}}, "not a JSON object"},
		{"image in system", Request{Messages: []Message{{Role: RoleSystem, Parts: []Part{{Kind: PartImage, URL: "https://x/y.png"}}}, user}}, "system"},
		{"unknown role", Request{Messages: []Message{{Role: "narrator"}}}, "narrator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Gemini.EncodeRequest(&tt.req)
			var pe *Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !strings.Contains(pe.Msg, tt.want) {
				t.Fatalf("got %v, want a 400 *Error containing %q", err, tt.want)
			}
		})
	}
}

func TestGeminiDecodeResponse(t *testing.T) {
	tests := []struct {
		file string
		want Response
	}{
		{"gemini/response_text.json", Response{
			ID: "mAitaLmkHPPlz7IPvtfUqQ4", Model: "gemini-2.5-flash",
			Parts: []Part{
				{Kind: PartThinking, Text: "The user wants a haiku. Count syllables."},
				{Kind: PartText, Text: "Autumn moonlight—\n"},
				{Kind: PartThinking, Signature: "c2lnLXRleHQ="},
				{Kind: PartText, Text: "a worm digs silently\ninto the chestnut."},
			},
			Finish:    FinishStop,
			Usage:     Usage{Input: 120, Output: 61, CacheRead: 100, Reasoning: 44},
			UsageSeen: true,
		}},
		{"gemini/response_tools.json", Response{
			ID: "abc-123", Model: "gemini-3-flash-preview",
			Parts: []Part{{Kind: PartThinking, Signature: "c2lnLWZj"}},
			ToolCalls: []ToolCall{
				{ID: "call_abc-123_0", Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`},
				{ID: "call_abc-123_1", Name: "get_time", Arguments: `{"tz":"Europe/Paris"}`},
			},
			Finish:    FinishToolCalls,
			Usage:     Usage{Input: 80, Output: 30},
			UsageSeen: true,
		}},
		{"gemini/response_max_tokens.json", Response{
			ID: "r-max", Model: "gemini-2.0-flash",
			Parts:  []Part{{Kind: PartText, Text: "Once upon a"}},
			Finish: FinishLength, Usage: Usage{Input: 9, Output: 4}, UsageSeen: true,
		}},
		{"gemini/response_safety.json", Response{
			Model: "gemini-2.5-pro", Finish: FinishContentFilter, Usage: Usage{Input: 12}, UsageSeen: true,
		}},
		{"gemini/response_blocked.json", Response{
			ID: "blocked-1", Model: "gemini-2.5-flash", Finish: FinishContentFilter, Usage: Usage{Input: 7}, UsageSeen: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Gemini.DecodeResponse(respTRead(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func TestGeminiDecodeResponseFinishReasons(t *testing.T) {
	for reason, want := range map[string]Finish{
		"STOP": FinishStop, "MAX_TOKENS": FinishLength, "SAFETY": FinishContentFilter, "RECITATION": FinishContentFilter,
		"BLOCKLIST": FinishContentFilter, "PROHIBITED_CONTENT": FinishContentFilter, "SPII": FinishContentFilter,
		"OTHER": FinishStop, "MALFORMED_FUNCTION_CALL": FinishStop,
	} {
		body := `{"candidates":[{"content":{"role":"model","parts":[{"text":"x"}]},"finishReason":"` + reason + `"}]}`
		got, err := Gemini.DecodeResponse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got.Finish != want {
			t.Errorf("%s: got %q, want %q", reason, got.Finish, want)
		}
	}
	got, err := Gemini.DecodeResponse([]byte(`{"candidates":[{"content":{"parts":[{"functionCall":{"id":"fc-9","name":"f"}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Finish != FinishToolCalls || got.ToolCalls[0] != (ToolCall{ID: "fc-9", Name: "f", Arguments: "{}"}) || got.UsageSeen {
		t.Fatalf("%+v", got)
	}
}

func TestGeminiDecodeResponseErrors(t *testing.T) {
	for _, tt := range []struct {
		body   string
		status int
		want   string
	}{
		{string(respTRead(t, "gemini/error.json")), 400, "API key not valid"},
		{string(respTRead(t, "gemini/error_array.json")), 502, "Resource has been exhausted"},
		{`not json`, 0, "gemini"},
		{`[1,2]`, 0, "array"},
	} {
		_, err := Gemini.DecodeResponse([]byte(tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Fatalf("%s: got %v", tt.body, err)
		}
		var pe *Error
		if tt.status != 0 && (!errors.As(err, &pe) || pe.Status != tt.status) {
			t.Fatalf("%s: want status %d, got %v", tt.body, tt.status, err)
		}
	}
}

func TestGeminiErrorMessage(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{string(respTRead(t, "gemini/error.json")), "API key not valid. Please pass a valid API key."},
		{string(respTRead(t, "gemini/error_array.json")), "Resource has been exhausted (e.g. check quota)."},
		{`{"error":{"code":503,"status":"UNAVAILABLE"}}`, "UNAVAILABLE"},
		{string(respTRead(t, "gemini/response_text.json")), ""},
		{`[]`, ""},
		{`<html>`, ""},
		{``, ""},
	} {
		if got := Gemini.ErrorMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

// gemTEvents splits an SSE body into data payloads as the relay does:
// frames end with a blank line, CRLF or LF.
func gemTEvents(t *testing.T, body []byte) [][]byte {
	t.Helper()
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	var out [][]byte
	for _, frame := range bytes.Split(body, []byte("\n\n")) {
		if len(bytes.TrimSpace(frame)) == 0 {
			continue
		}
		data, ok := bytes.CutPrefix(frame, []byte("data: "))
		if !ok {
			t.Fatalf("frame without data: %q", frame)
		}
		out = append(out, data)
	}
	return out
}

func gemTDecode(t *testing.T, file string) []Delta {
	t.Helper()
	dec := Gemini.NewDecoder()
	var ds []Delta
	for _, data := range gemTEvents(t, respTRead(t, file)) {
		var done bool
		var err error
		ds, done, err = dec.Event(ds, "", data)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			t.Fatal("a Gemini stream ends at EOF, never at an event")
		}
	}
	return ds
}

func TestGeminiStreamText(t *testing.T) {
	ds := gemTDecode(t, "gemini/stream_text.sse")
	want := []Delta{
		{ID: "s-1", Model: "gemini-2.5-flash"},
		{Thinking: "Let me think about a haiku."},
		{Usage: &Usage{Input: 10, Output: 20, Reasoning: 20}},
		{Text: "Autumn moonlight"},
		{Usage: &Usage{Input: 10, Output: 23, Reasoning: 20}},
		{Signature: "c2lnLTE="},
		{Text: " — a worm digs"},
		{Usage: &Usage{Input: 10, Output: 27, Reasoning: 20}},
		{Finish: FinishStop},
		{Usage: &Usage{Input: 10, Output: 29, CacheRead: 4, Reasoning: 20}},
	}
	if !reflect.DeepEqual(ds, want) {
		t.Fatalf("got\n%s\nwant\n%s", gemTDump(ds), gemTDump(want))
	}
}

func TestGeminiStreamTools(t *testing.T) {
	ds := gemTDecode(t, "gemini/stream_tools.sse")
	want := []Delta{
		{ID: "s-2", Model: "gemini-3-flash-preview"},
		{Signature: "c2lnLWZj"},
		{Tool: &ToolDelta{Index: 0, ID: "call_s-2_0", Name: "get_weather", Arguments: `{"city":"Paris"}`}},
		{Usage: &Usage{Input: 50, Output: 8}},
		{Tool: &ToolDelta{Index: 1, ID: "call_s-2_1", Name: "get_time", Arguments: `{}`}},
		{Finish: FinishToolCalls},
		{Usage: &Usage{Input: 50, Output: 12}},
	}
	if !reflect.DeepEqual(ds, want) {
		t.Fatalf("got\n%s\nwant\n%s", gemTDump(ds), gemTDump(want))
	}
}

func TestGeminiStreamBlockedAndErrors(t *testing.T) {
	dec := Gemini.NewDecoder()
	ds, done, err := dec.Event(nil, "", respTRead(t, "gemini/response_blocked.json"))
	if err != nil || done {
		t.Fatal(err, done)
	}
	if len(ds) != 3 || ds[1].Finish != FinishContentFilter || ds[2].Usage.Input != 7 {
		t.Fatalf("%s", gemTDump(ds))
	}
	if ds, _, err = dec.Event(nil, "", []byte("  ")); err != nil || len(ds) != 0 {
		t.Fatal("a blank event carries nothing", err)
	}
	_, _, err = dec.Event(nil, "", []byte(`{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}`))
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 500 || !strings.Contains(pe.Msg, "Internal error") {
		t.Fatalf("got %v", err)
	}
	if _, _, err = dec.Event(nil, "", []byte(`{"candidates":`)); err == nil {
		t.Fatal("broken JSON must fail")
	}
}

// A Gemini answer goes back to Gemini with its signature where it came.
func TestGeminiSignatureRoundTrip(t *testing.T) {
	resp, err := Gemini.DecodeResponse(respTRead(t, "gemini/response_tools.json"))
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Messages: []Message{
		{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Weather and time in Paris?"}}},
		{Role: RoleAssistant, Parts: resp.Parts, ToolCalls: resp.ToolCalls},
		{Role: RoleTool, ToolCallID: resp.ToolCalls[0].ID, Parts: []Part{{Kind: PartText, Text: `{"temp":18}`}}},
		{Role: RoleTool, ToolCallID: resp.ToolCalls[1].ID, Parts: []Part{{Kind: PartText, Text: "12:00"}}},
	}}
	got, err := Gemini.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	gemTJSONEqual(t, got, []byte(`{"contents":[
		{"role":"user","parts":[{"text":"Weather and time in Paris?"}]},
		{"role":"model","parts":[
			{"functionCall":{"name":"get_weather","args":{"city":"Paris","unit":"celsius"}},"thoughtSignature":"c2lnLWZj"},
			{"functionCall":{"name":"get_time","args":{"tz":"Europe/Paris"}}}]},
		{"role":"user","parts":[
			{"functionResponse":{"name":"get_weather","response":{"temp":18}}},
			{"functionResponse":{"name":"get_time","response":{"content":"12:00"}}}]}]}`))
}

func gemTDump(ds []Delta) string {
	var b strings.Builder
	for _, d := range ds {
		j, _ := json.Marshal(d)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

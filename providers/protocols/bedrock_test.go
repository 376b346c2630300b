package protocols

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func cvPtr[T any](v T) *T { return &v }

func cvText(s string) Part { return Part{Kind: PartText, Text: s} }

// 1x1 transparent PNG.
const bedrockPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

// bedrockGolden compares got with testdata/bedrock/name as JSON values;
// UPDATE_GOLDEN=1 rewrites the file.
func bedrockGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "bedrock", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		buf.WriteByte('\n')
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("encoded body is not JSON: %v\n%s", err, got)
	}
	if !reflect.DeepEqual(w, g) {
		t.Errorf("%s differs:\ngot  %s\nwant %s", name, got, bytes.Join(bytes.Fields(want), nil))
	}
}

var bedrockWeatherTool = Tool{Name: "get_weather", Description: "Weather of a city",
	Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}

func TestBedrockEncodeRequest(t *testing.T) {
	cases := []struct {
		golden string // testdata/bedrock/<golden>
		req    Request
	}{
		// System messages anywhere join the top-level system list in
		// order; sampling goes to inferenceConfig, top_k to the model's
		// own fields; model and stream stay out of the body.
		{"request_basic.json", Request{
			Model: "anthropic.claude-3-5-haiku-20241022-v1:0", Stream: true, StreamUsage: true,
			Messages: []Message{
				{Role: RoleSystem, Parts: []Part{cvText("You are terse.")}},
				{Role: RoleUser, Parts: []Part{cvText("What is 1+1? <answer> & more")}},
				{Role: RoleSystem, Parts: []Part{cvText("Answer in English.")}},
				{Role: RoleAssistant, Parts: []Part{cvText("2.")}},
				{Role: RoleUser, Parts: []Part{cvText("  "), cvText("And 2+2?")}},
			},
			MaxTokens: 256, Temperature: cvPtr(0.2), TopP: cvPtr(0.9), TopK: cvPtr(40), Stop: []string{"\n\nHuman:"},
			User: "user-1", ParallelToolCalls: cvPtr(false),
		}},
		// Tool calls become toolUse blocks; consecutive tool results and
		// the user's next words merge into one user message; a failed
		// result says status error; an inline image is sent as bytes.
		{"request_tools.json", Request{
			Messages: []Message{
				{Role: RoleUser, Parts: []Part{cvText("Weather in Paris and Rome?"), {Kind: PartImage, MediaType: "image/png", Data: bedrockPNG}}},
				{Role: RoleAssistant, Parts: []Part{cvText("Checking both.")}, ToolCalls: []ToolCall{
					{ID: "call_1", Name: "get_weather", Arguments: `{"city": "Paris"}`},
					{ID: "functions.get_weather:2", Name: "get_weather", Arguments: ``},
				}},
				{Role: RoleTool, ToolCallID: "call_1", Parts: []Part{cvText(`{"temp":21}`)}},
				{Role: RoleTool, ToolCallID: "functions.get_weather:2", ToolError: true, Parts: []Part{cvText("city is required")}},
				{Role: RoleUser, Parts: []Part{{Kind: PartImage, URL: "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD"}, cvText("Also this?")}},
			},
			Tools:      []Tool{bedrockWeatherTool, {Name: "now"}},
			ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "get_weather"},
		}},
		// Reasoning without max tokens leaves room for the answer beyond
		// the budget, within what Claude answers unstreamed; sampling
		// changes Claude refuses while thinking are dropped; signed
		// thinking goes back, unsigned thinking not.
		{"request_reasoning.json", Request{
			Messages: []Message{
				{Role: RoleUser, Parts: []Part{cvText("Think: 17*23?")}},
				{Role: RoleAssistant, Parts: []Part{
					{Kind: PartThinking, Text: "17*23 = 391", Signature: "sig-1"},
					{Kind: PartThinking, Text: "unsigned musing"},
					cvText("391"),
				}},
				{Role: RoleUser, Parts: []Part{cvText("And 17*24?")}},
			},
			Reasoning: &Reasoning{Effort: "high"}, Temperature: cvPtr(0.3), TopP: cvPtr(0.99), TopK: cvPtr(5),
			Tools: []Tool{bedrockWeatherTool}, ToolChoice: &ToolChoice{Mode: ToolAuto},
		}},
		// A thinking budget at or above max tokens shrinks under it.
		{"request_reasoning_bounded.json", Request{
			Messages:  []Message{{Role: RoleUser, Parts: []Part{cvText("hi")}}},
			MaxTokens: 2000, Reasoning: &Reasoning{BudgetTokens: 4000},
		}},
		// json_schema is Converse structured output, the schema as text.
		{"request_json_schema.json", Request{
			Messages: []Message{{Role: RoleUser, Parts: []Part{cvText("Extract: John is 42.")}}},
			Format: &Format{Kind: FormatJSONSchema, Name: "person", Strict: true,
				Schema: json.RawMessage(`{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false}`)},
			ToolChoice: &ToolChoice{Mode: ToolAuto}, Tools: []Tool{bedrockWeatherTool},
		}},
		// json_object has no Converse form: a system instruction asks.
		{"request_json_object.json", Request{
			Messages: []Message{{Role: RoleSystem, Parts: []Part{cvText("Be brief.")}}, {Role: RoleUser, Parts: []Part{cvText("Give me a JSON greeting.")}}},
			Format:   &Format{Kind: FormatJSON},
		}},
		// Tool choice none without tool history: no tools at all.
		{"request_tool_none.json", Request{
			Messages: []Message{{Role: RoleUser, Parts: []Part{cvText("Just chat.")}}},
			Tools:    []Tool{bedrockWeatherTool}, ToolChoice: &ToolChoice{Mode: ToolNone},
		}},
		// Tool choice none with tool history: Bedrock needs toolConfig for
		// toolUse blocks, so the tools stay, with no choice (auto).
		{"request_tool_none_history.json", Request{
			Messages: []Message{
				{Role: RoleUser, Parts: []Part{cvText("Weather?")}},
				{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
				{Role: RoleTool, ToolCallID: "c1", Parts: []Part{cvText("-3C")}},
			},
			Tools: []Tool{bedrockWeatherTool}, ToolChoice: &ToolChoice{Mode: ToolNone},
		}},
		// Tool history without declared tools: the used tools are declared
		// with open parameters; an empty tool result is an empty list.
		{"request_undeclared_tools.json", Request{
			Messages: []Message{
				{Role: RoleUser, Parts: []Part{cvText("Weather?")}},
				{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
				{Role: RoleTool, ToolCallID: "c1"},
			},
		}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			body, err := BedrockConverse.EncodeRequest(&c.req)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(body, []byte(`"model"`)) || bytes.Contains(body, []byte(`"stream"`)) {
				t.Errorf("model or stream in the body: %s", body)
			}
			bedrockGolden(t, c.golden, body)
		})
	}
}

func TestBedrockThinkingBudget(t *testing.T) {
	user := []Message{{Role: RoleUser, Parts: []Part{cvText("hi")}}}
	cases := []struct {
		name           string
		req            Request
		budget, maxTok int // want; budget 0 = no thinking
	}{
		{"streamed, no max", Request{Stream: true, Reasoning: &Reasoning{Effort: "high"}}, 24576, 24576 + 4096},
		{"unstreamed, no max", Request{Reasoning: &Reasoning{Effort: "high"}}, 15999, 21333},
		{"budget under max", Request{MaxTokens: 8000, Reasoning: &Reasoning{BudgetTokens: 2000}}, 2000, 8000},
		{"budget floor", Request{MaxTokens: 1100, Reasoning: &Reasoning{BudgetTokens: 5000}}, 1024, 1100},
		{"max too small", Request{MaxTokens: 1000, Reasoning: &Reasoning{Effort: "low"}}, 0, 1000},
		{"unknown effort", Request{Reasoning: &Reasoning{Effort: "extreme"}}, 0, 0},
		// Claude refuses forced tool use while thinking: the tool wins.
		{"forced tool", Request{Reasoning: &Reasoning{Effort: "low"}, Tools: []Tool{bedrockWeatherTool}, ToolChoice: &ToolChoice{Mode: ToolRequired}}, 0, 0},
	}
	for _, c := range cases {
		c.req.Messages = user
		body, err := BedrockConverse.EncodeRequest(&c.req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			InferenceConfig struct{ MaxTokens int }
			Extra           struct {
				Thinking *struct {
					Type   string
					Budget int `json:"budget_tokens"`
				}
			} `json:"additionalModelRequestFields"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		budget := 0
		if th := got.Extra.Thinking; th != nil && th.Type == "enabled" {
			budget = th.Budget
		}
		if budget != c.budget || got.InferenceConfig.MaxTokens != c.maxTok {
			t.Errorf("%s: budget %d max %d, want %d %d: %s", c.name, budget, got.InferenceConfig.MaxTokens, c.budget, c.maxTok, body)
		}
	}
}

func TestBedrockEncodeRequestErrors(t *testing.T) {
	user := func(parts ...Part) []Message { return []Message{{Role: RoleUser, Parts: parts}} }
	cases := []struct {
		name string
		req  Request
		want string // in the message
	}{
		{"image by URL", Request{Messages: user(Part{Kind: PartImage, URL: "https://example.com/cat.png"})}, "cannot fetch images by URL"},
		{"unsupported image", Request{Messages: user(Part{Kind: PartImage, MediaType: "image/tiff", Data: "SUkqAAgAAAA="})}, `"image/tiff" is not supported`},
		{"arguments not an object", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "a", Name: "f", Arguments: `[1,2]`}}}}}, "not a JSON object"},
		{"arguments not JSON", Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "a", Name: "f", Arguments: `{"a":`}}}}}, "not a JSON object"},
		{"bad tool schema", Request{Messages: user(cvText("hi")), Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type":`)}}}, "not valid JSON"},
		{"bad format schema", Request{Messages: user(cvText("hi")), Format: &Format{Kind: FormatJSONSchema, Schema: json.RawMessage(`{"a"}`)}}, "not valid JSON"},
		{"unknown role", Request{Messages: []Message{{Role: "developer", Parts: []Part{cvText("x")}}}}, "unknown role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := BedrockConverse.EncodeRequest(&c.req)
			var e *Error
			if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Msg, c.want) {
				t.Fatalf("got %v, want a 400 *Error containing %q", err, c.want)
			}
		})
	}
}

func TestBedrockDecodeResponse(t *testing.T) {
	body, err := os.ReadFile("testdata/bedrock/response_tool_use.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := BedrockConverse.DecodeResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	want := &Response{
		Parts: []Part{
			{Kind: PartThinking, Text: "The user wants the weather in Paris; I should call the tool.", Signature: "EqoBCkgIARABGAIiQK9xyzSignature=="},
			cvText("Let me check the weather."),
		},
		ToolCalls: []ToolCall{{ID: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
		Finish:    FinishToolCalls,
		// inputTokens excludes the cache: Input adds the 1200 read.
		Usage:     Usage{Input: 1212, Output: 85, CacheRead: 1200},
		UsageSeen: true,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}

	body, _ = os.ReadFile("testdata/bedrock/response_text.json")
	r, err = BedrockConverse.DecodeResponse(body)
	if err != nil || r.Finish != FinishLength || len(r.Parts) != 1 || r.Parts[0].Text != "1+1 equals 2." || r.Usage != (Usage{Input: 9, Output: 5}) {
		t.Errorf("text answer: %+v %v", r, err)
	}

	for _, bad := range []string{``, `[]`, `{"message":"x"}`, `{"output":{}}`, `{"output":{"message":`} {
		if _, err := BedrockConverse.DecodeResponse([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestBedrockFinishReasons(t *testing.T) {
	for reason, want := range map[string]Finish{
		"end_turn": FinishStop, "stop_sequence": FinishStop, "max_tokens": FinishLength,
		"tool_use": FinishToolCalls, "guardrail_intervened": FinishContentFilter,
		"content_filtered": FinishContentFilter, "model_context_window_exceeded": FinishLength, "something_new": FinishStop,
	} {
		body := `{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"` + reason + `"}`
		r, err := BedrockConverse.DecodeResponse([]byte(body))
		if err != nil || r.Finish != want || r.UsageSeen {
			t.Errorf("%s: %+v %v", reason, r, err)
		}
	}
}

// bedrockStream replays a testdata stream (one {"event","payload"} per
// line) through a fresh decoder.
func bedrockStream(t *testing.T, name string) (ds []Delta, done bool, err error) {
	t.Helper()
	f, ferr := os.Open(filepath.Join("testdata", "bedrock", name))
	if ferr != nil {
		t.Fatal(ferr)
	}
	defer f.Close()
	dec := BedrockConverse.NewDecoder()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Event   string
			Payload json.RawMessage
		}
		if jerr := json.Unmarshal(sc.Bytes(), &ev); jerr != nil {
			t.Fatal(jerr)
		}
		if done {
			t.Fatalf("event %s after the end", ev.Event)
		}
		ds, done, err = dec.Event(ds, ev.Event, ev.Payload)
		if err != nil {
			return ds, done, err
		}
	}
	return ds, done, nil
}

func TestBedrockStream(t *testing.T) {
	ds, done, err := bedrockStream(t, "stream_tool_use.jsonl")
	if err != nil || !done {
		t.Fatalf("done=%v err=%v", done, err)
	}
	want := []Delta{
		{Thinking: "Need the weather."},
		{Signature: "EqoBCkgIARABGAIiQK9xyz=="},
		{Text: "Checking"},
		{Text: " now."},
		// Tool indexes count tool blocks, not content blocks (2 and 3).
		{Tool: &ToolDelta{Index: 0, ID: "tooluse_A1", Name: "get_weather"}},
		{Tool: &ToolDelta{Index: 0, Arguments: `{"city":`}},
		{Tool: &ToolDelta{Index: 0, Arguments: `"Paris"}`}},
		{Tool: &ToolDelta{Index: 1, ID: "tooluse_B2", Name: "get_time"}},
		{Tool: &ToolDelta{Index: 1, Arguments: `{"tz":"Europe/Paris"}`}},
		{Finish: FinishToolCalls},
		// The cache write counts as input.
		{Usage: &Usage{Input: 1055, Output: 77, CacheWrite: 1024}},
	}
	if !reflect.DeepEqual(ds, want) {
		for i := range ds {
			t.Logf("%d: %+v %+v %+v", i, ds[i], ds[i].Tool, ds[i].Usage)
		}
		t.Fatalf("deltas differ")
	}
}

func TestBedrockStreamException(t *testing.T) {
	ds, done, err := bedrockStream(t, "stream_throttled.jsonl")
	var e *Error
	if done || !errors.As(err, &e) || e.Status != 429 || !strings.Contains(e.Msg, "throttlingException") ||
		!strings.Contains(e.Msg, "Too many tokens, please wait before trying again.") {
		t.Fatalf("done=%v err=%v", done, err)
	}
	if len(ds) != 1 || ds[0].Text != "1+1" {
		t.Errorf("deltas before the exception: %+v", ds)
	}

	dec := BedrockConverse.NewDecoder()
	if _, _, err := dec.Event(nil, "exception:modelStreamErrorException", []byte(`{"message":"Model crashed","originalStatusCode":500}`)); !errors.As(err, &e) || e.Status != 424 {
		t.Errorf("model stream error: %v", err)
	}
	if _, _, err := dec.Event(nil, "exception:internalServerException", []byte(`not json`)); err == nil {
		t.Error("exception without a message passed")
	}
	// Bad payloads of known events are errors; unknown events are skipped.
	if _, _, err := dec.Event(nil, "contentBlockDelta", []byte(`{"delta":`)); err == nil {
		t.Error("bad contentBlockDelta passed")
	}
	if ds, done, err := dec.Event(nil, "someFutureEvent", []byte(`{}`)); len(ds) != 0 || done || err != nil {
		t.Errorf("unknown event: %v %v %v", ds, done, err)
	}
}

func TestBedrockErrorMessage(t *testing.T) {
	body, _ := os.ReadFile("testdata/bedrock/error_throttling.json")
	for in, want := range map[string]string{
		string(body): "Too many requests, please wait before trying again.",
		`{"Message":"User: arn:aws:iam::123:user/x is not authorized"}`: "User: arn:aws:iam::123:user/x is not authorized",
		`{"error":{"message":"openai shape"}}`:                          "",
		`<html>502</html>`:                                              "",
		`{"message":42}`:                                                "",
	} {
		if got := BedrockConverse.ErrorMessage([]byte(in)); got != want {
			t.Errorf("%s: got %q want %q", in, got, want)
		}
	}
	if BedrockConverse.Protocol() != Converse {
		t.Error("protocol")
	}
}

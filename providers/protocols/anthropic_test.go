package protocols

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"
)

// The fixtures under testdata/anthropic are written from the Messages API
// reference (https://docs.anthropic.com/en/api/messages) and its streaming
// page: request bodies a client sends, answers and event streams the API
// returns.

func anthFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "anthropic", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// anthSSE is one server-sent event.
type anthSSE struct {
	name string
	data []byte
}

// anthParseSSE splits a text/event-stream body into events the way the
// relay's reader does: blank lines end events, ":" lines are comments, data
// lines join with "\n".
func anthParseSSE(b []byte) []anthSSE {
	var (
		out  []anthSSE
		cur  anthSSE
		seen bool
	)
	flush := func() {
		if seen || cur.name != "" {
			out = append(out, cur)
		}
		cur, seen = anthSSE{}, false
	}
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
		if line == "" {
			flush()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			cur.name = value
		case "data":
			if seen {
				cur.data = append(cur.data, '\n')
			}
			cur.data = append(cur.data, value...)
			seen = true
		}
	}
	flush()
	return out
}

// anthDecodeStream feeds a whole stream to a decoder; unnamed drops the
// event names, as a stream without "event:" lines would.
func anthDecodeStream(t testing.TB, stream []byte, unnamed bool) (ds []Delta, done bool, err error) {
	t.Helper()
	dec := Anthropic.NewDecoder()
	for _, ev := range anthParseSSE(stream) {
		name := ev.name
		if unnamed {
			name = ""
		}
		if done {
			t.Fatalf("event %q after the end of stream", ev.name)
		}
		ds, done, err = dec.Event(ds, name, ev.data)
		if err != nil {
			return ds, done, err
		}
	}
	return ds, done, nil
}

// anthSDKAccumulate reads a stream with the official SDK, as an Anthropic
// client of the gateway would.
func anthSDKAccumulate(t testing.TB, stream []byte) (anthropic.Message, error) {
	t.Helper()
	res := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(bytes.NewReader(stream)),
	}
	s := ssestream.NewStream[anthropic.MessageStreamEventUnion](ssestream.NewDecoder(res), nil)
	var msg anthropic.Message
	for s.Next() {
		if err := msg.Accumulate(s.Current()); err != nil {
			return msg, err
		}
	}
	return msg, s.Err()
}

// anthJSONEqual compares JSON texts by value.
func anthJSONEqual(t testing.TB, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", anthCompact(got), anthCompact(want))
	}
}

func anthCompact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// anthNormalize compacts a request's raw JSON so requests compare by value.
func anthNormalize(r *Request) {
	for i := range r.Tools {
		if r.Tools[i].Parameters != nil {
			r.Tools[i].Parameters = json.RawMessage(anthCompact(r.Tools[i].Parameters))
		}
	}
	if r.Format != nil && r.Format.Schema != nil {
		r.Format.Schema = json.RawMessage(anthCompact(r.Format.Schema))
	}
}

func anthDeepEqual(t testing.TB, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("differs\n got: %s\nwant: %s", g, w)
	}
}

func anthPtr[T any](v T) *T { return &v }

func TestAnthropicProtocol(t *testing.T) {
	if Anthropic.Protocol() != Messages {
		t.Errorf("Protocol() = %q", Anthropic.Protocol())
	}
	if Anthropic.StreamContentType() != "text/event-stream" {
		t.Errorf("StreamContentType() = %q", Anthropic.StreamContentType())
	}
}

func TestAnthropicDecodeRequestFixture(t *testing.T) {
	got, err := Anthropic.DecodeRequest(anthFixture(t, "request_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	anthNormalize(got)
	no := false
	want := &Request{
		Model:       "claude-sonnet-4-5",
		MaxTokens:   2048,
		Temperature: anthPtr(0.7),
		TopP:        anthPtr(0.9),
		TopK:        anthPtr(40),
		Stop:        []string{"END", "\n\nHuman:"},
		Stream:      true,
		Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "You are a weather assistant."}}},
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Answer briefly."}}},
			{Role: RoleUser, Parts: []Part{
				{Kind: PartText, Text: "What is in these pictures, and what's the weather in Paris?"},
				{Kind: PartImage, MediaType: "image/png", Data: "iVBORw0KGgo="},
				{Kind: PartImage, URL: "https://example.com/cat.jpg"},
			}},
			// redacted_thinking is dropped; the signed thinking stays.
			{Role: RoleAssistant, Parts: []Part{
				{Kind: PartThinking, Text: "The user wants the weather; call the tool.", Signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
				{Kind: PartText, Text: "A chart and a cat. Let me check the weather."},
			}, ToolCalls: []ToolCall{{ID: "toolu_01A09q90qw90lq917835lq9", Name: "get_weather", Arguments: `{"location":"Paris, France","unit":"celsius"}`}}},
			// The tool result comes before the rest of its user turn.
			{Role: RoleTool, ToolCallID: "toolu_01A09q90qw90lq917835lq9", Parts: []Part{{Kind: PartText, Text: "15 degrees, light rain"}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "And in London?"}}},
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "toolu_02", Name: "get_weather", Arguments: `{"location":"London"}`}}},
			{Role: RoleTool, ToolCallID: "toolu_02", ToolError: true, Parts: []Part{{Kind: PartText, Text: "service unavailable"}}},
		},
		Tools: []Tool{
			{Name: "get_weather", Description: "Get the current weather in a given location",
				Parameters: json.RawMessage(`{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}`)},
			{Name: "no_args", Parameters: json.RawMessage(`{"type":"object"}`)},
		},
		ToolChoice:        &ToolChoice{Mode: ToolRequired},
		ParallelToolCalls: &no,
		User:              "user-1234",
	}
	anthDeepEqual(t, got, want)
}

func TestAnthropicDecodeRequestThinkingSchema(t *testing.T) {
	got, err := Anthropic.DecodeRequest(anthFixture(t, "request_thinking_schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	anthNormalize(got)
	want := &Request{
		Model:     "claude-opus-4-1",
		MaxTokens: 16000,
		Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Extract the contact."}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "John Smith (john@example.com) wants the Enterprise plan."}}},
		},
		Reasoning: &Reasoning{BudgetTokens: 10000},
		Format: &Format{Kind: FormatJSONSchema, Name: "response", Strict: true,
			Schema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"},"email":{"type":"string"}},"required":["name","email"],"additionalProperties":false}`)},
	}
	anthDeepEqual(t, got, want)
}

func TestAnthropicDecodeRequestVariants(t *testing.T) {
	user := `"messages":[{"role":"user","content":"hi"}]`
	hi := []Message{{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "hi"}}}}
	no := false
	tests := []struct {
		name string
		body string   // the client's request
		want *Request // the hub request it decodes to
	}{{
		name: "content string and no max_tokens",
		body: `{"model":"m",` + user + `}`,
		want: &Request{Model: "m", Messages: hi},
	}, {
		name: "tool_choice auto with parallel calls off",
		body: `{` + user + `,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`,
		want: &Request{Messages: hi, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{"type":"object"}`)}},
			ToolChoice: &ToolChoice{Mode: ToolAuto}, ParallelToolCalls: &no},
	}, {
		name: "tool_choice tool",
		body: `{` + user + `,"tool_choice":{"type":"tool","name":"f"}}`,
		want: &Request{Messages: hi, ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "f"}},
	}, {
		name: "tool_choice none",
		body: `{` + user + `,"tool_choice":{"type":"none"}}`,
		want: &Request{Messages: hi, ToolChoice: &ToolChoice{Mode: ToolNone}},
	}, {
		// The structured-outputs beta spelled it output_format.
		name: "beta output_format",
		body: `{` + user + `,"output_format":{"type":"json_schema","schema":{"type":"object"}}}`,
		want: &Request{Messages: hi, Format: &Format{Kind: FormatJSONSchema, Name: "response", Strict: true, Schema: json.RawMessage(`{"type":"object"}`)}},
	}, {
		name: "adaptive thinking takes output_config.effort",
		body: `{` + user + `,"thinking":{"type":"adaptive"},"output_config":{"effort":"low"}}`,
		want: &Request{Messages: hi, Reasoning: &Reasoning{Effort: "low"}},
	}, {
		name: "thinking disabled",
		body: `{` + user + `,"thinking":{"type":"disabled"}}`,
		want: &Request{Messages: hi},
	}, {
		name: "empty system string and empty metadata",
		body: `{"system":"",` + user + `,"metadata":{}}`,
		want: &Request{Messages: hi},
	}, {
		name: "tool result with image, no content, and assistant prefill",
		body: `{"messages":[
			{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"shot","input":{}},{"type":"tool_use","id":"t2","name":"noop"}]},
			{"role":"user","content":[
				{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"here"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]},
				{"type":"tool_result","tool_use_id":"t2"}]},
			{"role":"assistant","content":"{"}]}`,
		want: &Request{Messages: []Message{
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "t1", Name: "shot", Arguments: "{}"}, {ID: "t2", Name: "noop", Arguments: "{}"}}},
			{Role: RoleTool, ToolCallID: "t1", Parts: []Part{{Kind: PartText, Text: "here"}, {Kind: PartImage, MediaType: "image/jpeg", Data: "/9j/"}}},
			{Role: RoleTool, ToolCallID: "t2"},
			{Role: RoleAssistant, Parts: []Part{{Kind: PartText, Text: "{"}}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Anthropic.DecodeRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			anthNormalize(got)
			anthDeepEqual(t, got, tt.want)
		})
	}
}

func TestAnthropicDecodeRequestErrors(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name string
		body string
		want string // in the error message: the field at fault
	}{
		{"bad JSON", `{"messages":`, "not valid JSON"},
		{"not an object", `[{"role":"user"}]`, "must be a JSON object"},
		{"empty body", ``, "not valid JSON"},
		{"messages missing", `{"model":"m","max_tokens":1}`, "messages: field required"},
		{"messages null", `{"messages":null}`, "messages: field required"},
		{"messages empty", `{"messages":[]}`, "messages: at least one"},
		{"messages not an array", `{"messages":"hi"}`, "messages"},
		{"max_tokens a string", `{"max_tokens":"10",` + msgs + `}`, "max_tokens"},
		{"stream a string", `{"stream":"yes",` + msgs + `}`, "stream"},
		{"system role in messages", `{"messages":[{"role":"system","content":"x"}]}`, "messages[0].role"},
		{"content a number", `{"messages":[{"role":"user","content":5}]}`, "messages[0].content"},
		{"content missing", `{"messages":[{"role":"user"}]}`, "messages[0].content: field required"},
		{"system a number", `{"system":5,` + msgs + `}`, "system"},
		{"system image", `{"system":[{"type":"image"}],` + msgs + `}`, "system[0].type"},
		{"server tool", `{` + msgs + `,"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, `"web_search_20250305"`},
		{"tool schema not an object", `{` + msgs + `,"tools":[{"name":"f","input_schema":5}]}`, "tools[0].input_schema"},
		{"tool without name", `{` + msgs + `,"tools":[{"input_schema":{}}]}`, "tools[0].name"},
		{"bad tool_choice", `{` + msgs + `,"tool_choice":{"type":"some"}}`, "tool_choice.type"},
		{"tool_choice tool without name", `{` + msgs + `,"tool_choice":{"type":"tool"}}`, "tool_choice.name"},
		{"file image source", `{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, "messages[0].content[0].source.type"},
		{"image without source", `{"messages":[{"role":"user","content":[{"type":"image"}]}]}`, "messages[0].content[0].source"},
		{"document block", `{"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, `"document"`},
		{"tool_result from assistant", `{"messages":[{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"x"}]}]}`, "user turns"},
		{"tool_use from user", `{"messages":[{"role":"user","content":[{"type":"tool_use","id":"x","name":"f","input":{}}]}]}`, "assistant turns"},
		{"tool_result with document", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"document"}]}]}]}`, "messages[0].content[0].content[0].type"},
		{"thinking without budget", `{` + msgs + `,"thinking":{"type":"enabled"}}`, "thinking.budget_tokens"},
		{"unknown thinking type", `{` + msgs + `,"thinking":{"type":"deep"}}`, "thinking.type"},
		{"text output format", `{` + msgs + `,"output_config":{"format":{"type":"text"}}}`, "output_config.format.type"},
		{"schema missing", `{` + msgs + `,"output_format":{"type":"json_schema"}}`, "output_format.schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Anthropic.DecodeRequest([]byte(tt.body))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if pe.Status != http.StatusBadRequest {
				t.Errorf("status = %d", pe.Status)
			}
			if !strings.Contains(pe.Msg, tt.want) {
				t.Errorf("message %q does not name %q", pe.Msg, tt.want)
			}
		})
	}
}

func TestAnthropicEncodeRequest(t *testing.T) {
	no := false
	user := func(s string) Message { return Message{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: s}}} }
	weather := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`)
	tests := []struct {
		name string
		req  Request
		want string // the body sent to Anthropic
	}{{
		name: "system messages joined wherever they are, max_tokens defaulted",
		req: Request{Model: "claude", Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Be brief."}}},
			user("hi"),
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Use French."}, {Kind: PartText, Text: ""}}},
		}},
		want: `{"model":"claude","max_tokens":4096,"system":"Be brief.\n\nUse French.",
			"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
	}, {
		name: "images by URL and inline",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{{Role: RoleUser, Parts: []Part{
			{Kind: PartText, Text: "compare"},
			{Kind: PartImage, URL: "https://example.com/a.png"},
			{Kind: PartImage, MediaType: "image/webp", Data: "UklGR"},
		}}}},
		want: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
			{"type":"text","text":"compare"},
			{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}},
			{"type":"image","source":{"type":"base64","media_type":"image/webp","data":"UklGR"}}]}]}`,
	}, {
		name: "tool loop: calls, results in one user turn, named choice, one call at a time",
		req: Request{Model: "m", MaxTokens: 100, Messages: []Message{
			user("weather?"),
			{Role: RoleAssistant, Parts: []Part{{Kind: PartText, Text: "checking"}}, ToolCalls: []ToolCall{
				{ID: "call_1", Name: "get_weather", Arguments: `{"city": "Paris"}`},
				{ID: "call_2", Name: "get_time", Arguments: `{"tz":`}, // cut off: sent as {}
				{ID: "call_3", Name: "get_time", Arguments: ``},
			}},
			{Role: RoleTool, ToolCallID: "call_1", Parts: []Part{{Kind: PartText, Text: "15C"}}},
			{Role: RoleTool, ToolCallID: "call_2", ToolError: true, Parts: []Part{{Kind: PartText, Text: "bad tz"}, {Kind: PartImage, URL: "https://x/y.png"}}},
			{Role: RoleTool, ToolCallID: "call_3"},
			user("thanks"),
		}, Tools: []Tool{{Name: "get_weather", Description: "Weather", Parameters: weather}, {Name: "get_time"}},
			ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "get_weather"}, ParallelToolCalls: &no},
		want: `{"model":"m","max_tokens":100,"messages":[
			{"role":"user","content":[{"type":"text","text":"weather?"}]},
			{"role":"assistant","content":[{"type":"text","text":"checking"},
				{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
				{"type":"tool_use","id":"call_2","name":"get_time","input":{}},
				{"type":"tool_use","id":"call_3","name":"get_time","input":{}}]},
			{"role":"user","content":[
				{"type":"tool_result","tool_use_id":"call_1","content":"15C"},
				{"type":"tool_result","tool_use_id":"call_2","is_error":true,"content":[{"type":"text","text":"bad tz"},{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]},
				{"type":"tool_result","tool_use_id":"call_3"},
				{"type":"text","text":"thanks"}]}],
			"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},
				{"name":"get_time","input_schema":{"type":"object","properties":{}}}],
			"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}}`,
	}, {
		// The API refuses text before tool results in a user turn.
		name: "results go before user text of the same turn; same roles merge; empty turns drop",
		req: Request{Model: "m", MaxTokens: 5, Messages: []Message{
			user("a"),
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: ""}}},
			user("b"),
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: "{}"}}},
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "unsigned"}}},
			user("note"),
			{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "ok"}}},
		}},
		want: `{"model":"m","max_tokens":5,"messages":[
			{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
			{"role":"assistant","content":[{"type":"tool_use","id":"c1","name":"f","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"c1","content":"ok"},{"type":"text","text":"note"}]}]}`,
	}, {
		name: "effort becomes a budget, max_tokens raised past it, sampling the API refuses dropped",
		req: Request{Model: "m", MaxTokens: 1000, Temperature: anthPtr(0.5), TopP: anthPtr(0.5), TopK: anthPtr(5),
			Reasoning: &Reasoning{Effort: "medium"}, Messages: []Message{
				user("q"),
				{Role: RoleAssistant, Parts: []Part{
					{Kind: PartThinking, Text: "t1", Signature: "s1"},
					{Kind: PartThinking, Text: "t2"}, // unsigned: dropped
					{Kind: PartText, Text: "a"},
				}},
				user("q2"),
			}},
		want: `{"model":"m","max_tokens":12288,"thinking":{"type":"enabled","budget_tokens":8192},"messages":[
			{"role":"user","content":[{"type":"text","text":"q"}]},
			{"role":"assistant","content":[{"type":"thinking","thinking":"t1","signature":"s1"},{"type":"text","text":"a"}]},
			{"role":"user","content":[{"type":"text","text":"q2"}]}]}`,
	}, {
		name: "budget below the minimum is raised; top_p of 0.95 kept",
		req: Request{Model: "m", MaxTokens: 8000, TopP: anthPtr(0.95), Reasoning: &Reasoning{BudgetTokens: 500},
			Messages: []Message{user("q")}},
		want: `{"model":"m","max_tokens":8000,"top_p":0.95,"thinking":{"type":"enabled","budget_tokens":1024},
			"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}`,
	}, {
		// "Thinking may not be enabled when tool_choice forces tool use."
		name: "no thinking with a forced tool",
		req: Request{Model: "m", MaxTokens: 100, Temperature: anthPtr(0.2), Reasoning: &Reasoning{Effort: "high"},
			Messages: []Message{user("q")}, Tools: []Tool{{Name: "f"}}, ToolChoice: &ToolChoice{Mode: ToolRequired}},
		want: `{"model":"m","max_tokens":100,"temperature":0.2,"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}],
			"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}}`,
	}, {
		// An OpenAI client does not keep thinking blocks; the API refuses a
		// tool loop whose last assistant turn lost its thinking.
		name: "no thinking when the last tool call turn has none",
		req: Request{Model: "m", MaxTokens: 100, Reasoning: &Reasoning{BudgetTokens: 2000}, Messages: []Message{
			user("q"),
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c", Name: "f", Arguments: "{}"}}},
			{Role: RoleTool, ToolCallID: "c", Parts: []Part{{Kind: PartText, Text: "r"}}},
		}},
		want: `{"model":"m","max_tokens":100,"messages":[
			{"role":"user","content":[{"type":"text","text":"q"}]},
			{"role":"assistant","content":[{"type":"tool_use","id":"c","name":"f","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"c","content":"r"}]}]}`,
	}, {
		name: "thinking kept when the tool call turn starts with signed thinking",
		req: Request{Model: "m", MaxTokens: 100, Reasoning: &Reasoning{BudgetTokens: 2000}, Messages: []Message{
			user("q"),
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "t", Signature: "sig"}}, ToolCalls: []ToolCall{{ID: "c", Name: "f", Arguments: "{}"}}},
			{Role: RoleTool, ToolCallID: "c", Parts: []Part{{Kind: PartText, Text: "r"}}},
		}},
		want: `{"model":"m","max_tokens":6096,"thinking":{"type":"enabled","budget_tokens":2000},"messages":[
			{"role":"user","content":[{"type":"text","text":"q"}]},
			{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"sig"},{"type":"tool_use","id":"c","name":"f","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"c","content":"r"}]}]}`,
	}, {
		name: "JSON schema",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{user("q")},
			Format: &Format{Kind: FormatJSONSchema, Name: "contact", Schema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}}}`), Strict: true}},
		want: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}],
			"output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"name":{"type":"string"}}}}}}`,
	}, {
		name: "JSON object mode is asked for in the system prompt",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Extract."}}}, user("q")},
			Format: &Format{Kind: FormatJSON}},
		want: `{"model":"m","max_tokens":10,"system":"Extract.\n\n` + anthJSONInstruction + `",
			"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}`,
	}, {
		name: "stop sequences, user, stream, OpenAI temperature clamped",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{user("q")}, Stop: []string{"END", "\n", " "},
			User: "u-1", Stream: true, Temperature: anthPtr(1.6), TopK: anthPtr(3)},
		want: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}],
			"stop_sequences":["END"],"metadata":{"user_id":"u-1"},"stream":true,"temperature":1,"top_k":3}`,
	}, {
		name: "tool_choice none; parallel flag does not go with it",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{user("q")}, Tools: []Tool{{Name: "f", Parameters: weather}},
			ToolChoice: &ToolChoice{Mode: ToolNone}, ParallelToolCalls: &no},
		want: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}],
			"tools":[{"name":"f","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"tool_choice":{"type":"none"}}`,
	}, {
		name: "no tool_choice without tools",
		req:  Request{Model: "m", MaxTokens: 10, Messages: []Message{user("q")}, ToolChoice: &ToolChoice{Mode: ToolAuto}, ParallelToolCalls: &no},
		want: `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}`,
	}, {
		// Gemini calls have no ids and others may hold characters the API
		// refuses (^[a-zA-Z0-9_-]+$).
		name: "tool ids made safe, missing ones made up and matched in order",
		req: Request{Model: "m", MaxTokens: 10, Messages: []Message{
			user("q"),
			{Role: RoleAssistant, ToolCalls: []ToolCall{{Name: "a", Arguments: "{}"}, {Name: "b", Arguments: "{}"}, {ID: "fc.1/x", Name: "c", Arguments: "{}"}}},
			{Role: RoleTool, Parts: []Part{{Kind: PartText, Text: "ra"}}},
			{Role: RoleTool, Parts: []Part{{Kind: PartText, Text: "rb"}}},
			{Role: RoleTool, ToolCallID: "fc.1/x", Parts: []Part{{Kind: PartText, Text: "rc"}}},
		}},
		want: `{"model":"m","max_tokens":10,"messages":[
			{"role":"user","content":[{"type":"text","text":"q"}]},
			{"role":"assistant","content":[{"type":"tool_use","id":"toolu_gw1","name":"a","input":{}},{"type":"tool_use","id":"toolu_gw2","name":"b","input":{}},{"type":"tool_use","id":"fc_1_x","name":"c","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gw1","content":"ra"},{"type":"tool_result","tool_use_id":"toolu_gw2","content":"rb"},{"type":"tool_result","tool_use_id":"fc_1_x","content":"rc"}]}]}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Anthropic.EncodeRequest(&tt.req)
			if err != nil {
				t.Fatal(err)
			}
			anthJSONEqual(t, got, []byte(tt.want))
		})
	}
}

func TestAnthropicEncodeRequestErrors(t *testing.T) {
	hi := []Message{{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "hi"}}}}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"nothing to send", Request{Messages: []Message{{Role: RoleUser, Parts: []Part{{Kind: PartText}}}}}, "messages"},
		{"invalid tool schema", Request{Messages: hi, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{`)}}}, `tools[0] "f"`},
		{"invalid format schema", Request{Messages: hi, Format: &Format{Kind: FormatJSONSchema, Name: "x", Schema: json.RawMessage(`{`)}}, "schema"},
		{"named choice without name", Request{Messages: hi, Tools: []Tool{{Name: "f"}}, ToolChoice: &ToolChoice{Mode: ToolNamed}}, "tool_choice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Anthropic.EncodeRequest(&tt.req)
			var pe *Error
			if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tt.want) {
				t.Errorf("err = %v, want *Error naming %q", err, tt.want)
			}
		})
	}
}

// A client's request survives decoding and encoding back unchanged in
// everything the hub carries.
func TestAnthropicRequestRoundTrip(t *testing.T) {
	for _, name := range []string{"request_full.json", "request_thinking_schema.json"} {
		t.Run(name, func(t *testing.T) {
			first, err := Anthropic.DecodeRequest(anthFixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			// The fixture forces a tool, which would turn thinking off.
			body, err := Anthropic.EncodeRequest(first)
			if err != nil {
				t.Fatal(err)
			}
			second, err := Anthropic.DecodeRequest(body)
			if err != nil {
				t.Fatalf("%v\n%s", err, body)
			}
			anthNormalize(first)
			anthNormalize(second)
			// System blocks come back as one joined prompt.
			first.Messages = anthJoinSystem(first.Messages)
			anthDeepEqual(t, second, first)
		})
	}
}

func anthJoinSystem(msgs []Message) []Message {
	var texts []string
	var rest []Message
	for _, m := range msgs {
		if m.Role == RoleSystem {
			texts = append(texts, m.Parts[0].Text)
			continue
		}
		rest = append(rest, m)
	}
	if len(texts) == 0 {
		return rest
	}
	return append([]Message{{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: strings.Join(texts, "\n\n")}}}}, rest...)
}

func TestAnthropicDecodeResponse(t *testing.T) {
	got, err := Anthropic.DecodeResponse(anthFixture(t, "response_tool_use.json"))
	if err != nil {
		t.Fatal(err)
	}
	anthDeepEqual(t, got, &Response{
		ID:    "msg_01Aq9w938a90dw8q",
		Model: "claude-sonnet-4-5-20250929",
		Parts: []Part{
			{Kind: PartThinking, Text: "I need the weather tool.", Signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
			{Kind: PartText, Text: "I'll check the weather in San Francisco."},
		},
		ToolCalls: []ToolCall{{ID: "toolu_01A09q90qw90lq917835lq9", Name: "get_weather", Arguments: `{"location":"San Francisco, CA","unit":"celsius"}`}},
		Finish:    FinishToolCalls,
		// input_tokens leaves out the cache reads and writes; the hub counts them in.
		Usage:     Usage{Input: 472 + 1200 + 3000, Output: 91, CacheRead: 3000, CacheWrite: 1200},
		UsageSeen: true,
	})

	got, err = Anthropic.DecodeResponse(anthFixture(t, "response_stop_sequence.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Finish != FinishStop || got.StopSequence != "END" || got.Usage != (Usage{Input: 10, Output: 8}) {
		t.Errorf("got finish %q, stop sequence %q, usage %+v", got.Finish, got.StopSequence, got.Usage)
	}
}

func TestAnthropicDecodeResponseFinish(t *testing.T) {
	tests := []struct {
		stopReason string
		want       Finish
	}{
		{"end_turn", FinishStop},
		{"max_tokens", FinishLength},
		{"stop_sequence", FinishStop},
		{"tool_use", FinishToolCalls},
		{"refusal", FinishContentFilter},
		{"pause_turn", FinishStop},
		{"model_context_window_exceeded", FinishLength},
	}
	for _, tt := range tests {
		t.Run(tt.stopReason, func(t *testing.T) {
			r, err := Anthropic.DecodeResponse([]byte(`{"id":"msg_1","type":"message","content":[],"stop_reason":"` + tt.stopReason + `"}`))
			if err != nil {
				t.Fatal(err)
			}
			if r.Finish != tt.want {
				t.Errorf("finish = %q, want %q", r.Finish, tt.want)
			}
			if r.UsageSeen {
				t.Error("usage seen in an answer without usage")
			}
		})
	}
}

func TestAnthropicDecodeResponseErrors(t *testing.T) {
	_, err := Anthropic.DecodeResponse(anthFixture(t, "error_overloaded.json"))
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 529 || pe.Msg != "Overloaded" {
		t.Errorf("err = %#v, want a 529 Overloaded", err)
	}
	for _, body := range []string{``, `null`, `[]`, `{"content":5}`, `<html>`} {
		if _, err := Anthropic.DecodeResponse([]byte(body)); err == nil {
			t.Errorf("DecodeResponse(%q) succeeded", body)
		}
	}
}

func TestAnthropicEncodeResponse(t *testing.T) {
	r := &Response{
		ID:    "chatcmpl-123",
		Model: "gpt-4o",
		Parts: []Part{
			{Kind: PartText, Text: "Let me look."},
			{Kind: PartThinking, Text: "weather tool", Signature: "sig"},
		},
		ToolCalls: []ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "call_2", Name: "noop", Arguments: ""}},
		// Gemini and some OpenAI-compatible servers say stop for tool calls.
		Finish: FinishStop,
		Usage:  Usage{Input: 100, Output: 20, CacheRead: 30, CacheWrite: 10},
	}
	body, err := Anthropic.EncodeResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	anthJSONEqual(t, body, []byte(`{"id":"msg_chatcmpl-123","type":"message","role":"assistant","model":"gpt-4o",
		"content":[{"type":"thinking","thinking":"weather tool","signature":"sig"},{"type":"text","text":"Let me look."},
			{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
			{"type":"tool_use","id":"call_2","name":"noop","input":{}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":60,"output_tokens":20,"cache_read_input_tokens":30,"cache_creation_input_tokens":10}}`))

	// The SDK reads it.
	var msg anthropic.Message
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 4 || msg.Content[2].Name != "get_weather" || msg.Usage.InputTokens != 60 {
		t.Errorf("SDK read %+v", msg)
	}
}

func TestAnthropicEncodeResponseStop(t *testing.T) {
	tests := []struct {
		name    string
		r       Response
		id      string // want
		stop    string
		stopSeq any
		input   int64
	}{
		{"msg id kept", Response{ID: "msg_abc", Finish: FinishStop}, "msg_abc", "end_turn", nil, 0},
		{"stop sequence", Response{ID: "x", Finish: FinishStop, StopSequence: "END"}, "msg_x", "stop_sequence", "END", 0},
		{"length", Response{ID: "x", Finish: FinishLength}, "msg_x", "max_tokens", nil, 0},
		{"content filter", Response{ID: "x", Finish: FinishContentFilter}, "msg_x", "refusal", nil, 0},
		{"no finish", Response{ID: "x"}, "msg_x", "end_turn", nil, 0},
		// A provider counting cache reads outside its input must not drive
		// input_tokens below zero.
		{"negative input", Response{ID: "x", Usage: Usage{Input: 5, CacheRead: 10}}, "msg_x", "end_turn", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Anthropic.EncodeResponse(&tt.r)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				ID           string `json:"id"`
				StopReason   string `json:"stop_reason"`
				StopSequence any    `json:"stop_sequence"`
				Content      []any  `json:"content"`
				Usage        struct {
					InputTokens int64 `json:"input_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.id || got.StopReason != tt.stop || got.StopSequence != tt.stopSeq || got.Usage.InputTokens != tt.input || got.Content == nil {
				t.Errorf("got %s", body)
			}
		})
	}
	body, _ := Anthropic.EncodeResponse(&Response{})
	var got struct{ ID string }
	_ = json.Unmarshal(body, &got)
	if !strings.HasPrefix(got.ID, "msg_") || len(got.ID) < 10 {
		t.Errorf("made-up id %q", got.ID)
	}
}

func TestAnthropicStreamDecode(t *testing.T) {
	u := func(in, out, read, write int64) *Usage {
		return &Usage{Input: in, Output: out, CacheRead: read, CacheWrite: write}
	}
	tests := []struct {
		fixture string
		want    []Delta
	}{{
		fixture: "stream_text.sse",
		want: []Delta{
			{ID: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", Model: "claude-sonnet-4-5-20250929", Usage: u(2025, 1, 2000, 0)},
			{Text: "Hello"},
			{Text: "!"},
			// message_delta reports only output_tokens: the input from
			// message_start stays.
			{Finish: FinishStop, Usage: u(2025, 15, 2000, 0)},
		},
	}, {
		fixture: "stream_tool_use.sse",
		want: []Delta{
			{ID: "msg_014p7gG3wDgGV9EUtLvnow3U", Model: "claude-sonnet-4-5", Usage: u(472, 2, 0, 0)},
			{Text: "Okay, let's check the weather for San Francisco, CA:"},
			{Tool: &ToolDelta{Index: 0, ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather"}},
			{Tool: &ToolDelta{Index: 0, Arguments: `{"location":`}},
			{Tool: &ToolDelta{Index: 0, Arguments: ` "San Francisco, CA"}`}},
			{Tool: &ToolDelta{Index: 1, ID: "toolu_02", Name: "get_time"}},
			{Tool: &ToolDelta{Index: 1, Arguments: `{"tz":"PST"}`}},
			{Finish: FinishToolCalls, Usage: u(472, 89, 0, 0)},
		},
	}, {
		fixture: "stream_thinking.sse",
		want: []Delta{
			{ID: "msg_01thinking", Model: "claude-sonnet-4-5", Usage: u(150, 1, 0, 50)},
			{Thinking: "Let me solve this step by step:\n\n1. 27 * 453"},
			{Thinking: " = 12231"},
			{Signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
			{Text: "27 * 453 = 12,231"},
			// Newer API versions repeat the input counts here: replaced,
			// not added.
			{Finish: FinishStop, StopSequence: "END", Usage: u(150, 210, 0, 50)},
		},
	}}
	for _, tt := range tests {
		for _, unnamed := range []bool{false, true} {
			name := tt.fixture
			if unnamed {
				name += "/no event names"
			}
			t.Run(name, func(t *testing.T) {
				got, done, err := anthDecodeStream(t, anthFixture(t, tt.fixture), unnamed)
				if err != nil {
					t.Fatal(err)
				}
				if !done {
					t.Error("message_stop did not end the stream")
				}
				anthDeepEqual(t, got, tt.want)
			})
		}
	}
}

func TestAnthropicStreamDecodeEdges(t *testing.T) {
	dec := Anthropic.NewDecoder()
	ds, _, err := dec.Event(nil, "content_block_start", []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}`))
	if err != nil || len(ds) != 0 {
		t.Errorf("server tool block: %v %+v", err, ds)
	}
	// A server tool's input streams as input_json_delta too: not a call of
	// the client's.
	ds, _, err = dec.Event(nil, "content_block_delta", []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"q\":1}"}}`))
	if err != nil || len(ds) != 0 {
		t.Errorf("server tool input: %v %+v", err, ds)
	}
	// Compatible servers may send a tool's input whole at its start.
	ds, _, _ = dec.Event(nil, "content_block_start", []byte(`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{"a": 1}}}`))
	anthDeepEqual(t, ds, []Delta{{Tool: &ToolDelta{Index: 0, ID: "t", Name: "f", Arguments: `{"a":1}`}}})

	for _, name := range []string{"ping", "content_block_stop", "some_future_event"} {
		ds, done, err := dec.Event(nil, name, []byte(`not json`))
		if err != nil || done || len(ds) != 0 {
			t.Errorf("%s: %v %v %+v", name, err, done, ds)
		}
	}
	if _, _, err := dec.Event(nil, "message_delta", []byte(`{"type":`)); err == nil {
		t.Error("broken message_delta accepted")
	}

	_, done, err := anthDecodeStream(t, anthFixture(t, "stream_error.sse"), false)
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 529 || pe.Msg != "Overloaded" || done {
		t.Errorf("error event: done %v, err %#v", done, err)
	}
	if _, _, err := anthDecodeStream(t, anthFixture(t, "stream_error.sse"), true); err == nil {
		t.Error("unnamed error event ignored")
	}
}

// anthEncodeStream writes deltas through a fresh encoder.
func anthEncodeStream(req *Request, ds []Delta) []byte {
	enc := Anthropic.NewEncoder(req)
	var out []byte
	for i := range ds {
		out = enc.Delta(out, &ds[i])
	}
	return enc.End(out)
}

func TestAnthropicStreamEncodeText(t *testing.T) {
	got := anthEncodeStream(&Request{Model: "gpt-4o"}, []Delta{
		{ID: "chatcmpl-1", Model: "gpt-4o-2024-08-06"},
		{Text: "Hi \"there\"\n"},
		{Finish: FinishStop},
		{Usage: &Usage{Input: 12, Output: 3, CacheRead: 2}},
	})
	want := "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"msg_chatcmpl-1","type":"message","role":"assistant","model":"gpt-4o-2024-08-06","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}}}` + "\n\n" +
		"event: ping\ndata: {\"type\":\"ping\"}\n\n" +
		"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"there\"\n"}}` + "\n\n" +
		"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n" +
		"event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"output_tokens":3,"cache_read_input_tokens":2,"cache_creation_input_tokens":0}}` + "\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAnthropicStreamEncodeSDK(t *testing.T) {
	type block struct{ typ, text, signature, id, name, input string }
	tests := []struct {
		name   string
		deltas []Delta
		model  string // want, with the request's model "req-model"
		blocks []block
		stop   anthropic.StopReason
		stopSq string
		usage  [4]int64 // input, output, cache read, cache write
	}{{
		name:   "no deltas at all",
		model:  "req-model",
		stop:   anthropic.StopReasonEndTurn,
		blocks: []block{},
	}, {
		name: "thinking, signature, text, stop sequence",
		deltas: []Delta{
			{ID: "msg_x", Model: "claude-x", Usage: &Usage{Input: 150, CacheWrite: 50}},
			{Thinking: "step 1"}, {Thinking: ", step 2"}, {Signature: "sig=="},
			// A second thinking block after a signed one is a new block.
			{Thinking: "again"}, {Signature: "sig2"},
			{Text: "answer"}, {Text: " done"},
			{Finish: FinishStop, StopSequence: "END", Usage: &Usage{Input: 150, Output: 42, CacheWrite: 50}},
		},
		model: "claude-x",
		blocks: []block{
			{typ: "thinking", text: "step 1, step 2", signature: "sig=="},
			{typ: "thinking", text: "again", signature: "sig2"},
			{typ: "text", text: "answer done"},
		},
		stop: anthropic.StopReasonStopSequence, stopSq: "END",
		usage: [4]int64{100, 42, 0, 50},
	}, {
		name: "text then two tool calls with split arguments",
		deltas: []Delta{
			{ID: "chatcmpl-9", Model: "gpt-4o"},
			{Text: "Checking."},
			{Tool: &ToolDelta{Index: 0, ID: "call_a", Name: "get_weather"}},
			{Tool: &ToolDelta{Index: 0, Arguments: `{"city":`}},
			{Tool: &ToolDelta{Index: 0, Arguments: `"Paris"}`}},
			{Tool: &ToolDelta{Index: 1, ID: "call_b", Name: "get_time", Arguments: `{}`}},
			{Finish: FinishToolCalls},
			{Usage: &Usage{Input: 30, Output: 25, Reasoning: 5}},
		},
		model: "gpt-4o",
		blocks: []block{
			{typ: "text", text: "Checking."},
			{typ: "tool_use", id: "call_a", name: "get_weather", input: `{"city":"Paris"}`},
			{typ: "tool_use", id: "call_b", name: "get_time", input: `{}`},
		},
		stop:  anthropic.StopReasonToolUse,
		usage: [4]int64{30, 25, 0, 0},
	}, {
		// Gemini finishes tool calls with stop, and its calls have no id.
		name: "tool call finished with stop, no id, nothing else",
		deltas: []Delta{
			{Tool: &ToolDelta{Index: 0, Name: "f", Arguments: `{"x":1}`}},
			{Finish: FinishStop, Usage: &Usage{Input: 7, Output: 2}},
		},
		model:  "req-model",
		blocks: []block{{typ: "tool_use", name: "f", input: `{"x":1}`}},
		stop:   anthropic.StopReasonToolUse,
		usage:  [4]int64{7, 2, 0, 0},
	}, {
		name:   "length",
		deltas: []Delta{{Text: "trunc"}, {Finish: FinishLength}},
		model:  "req-model",
		blocks: []block{{typ: "text", text: "trunc"}},
		stop:   anthropic.StopReasonMaxTokens,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := anthEncodeStream(&Request{Model: "req-model"}, tt.deltas)
			msg, err := anthSDKAccumulate(t, stream)
			if err != nil {
				t.Fatalf("%v\n%s", err, stream)
			}
			if !strings.HasPrefix(msg.ID, "msg_") || msg.Model != anthropic.Model(tt.model) || msg.Role != "assistant" {
				t.Errorf("id %q model %q role %q", msg.ID, msg.Model, msg.Role)
			}
			if msg.StopReason != tt.stop || msg.StopSequence != tt.stopSq {
				t.Errorf("stop %q %q, want %q %q", msg.StopReason, msg.StopSequence, tt.stop, tt.stopSq)
			}
			if got := [4]int64{msg.Usage.InputTokens, msg.Usage.OutputTokens, msg.Usage.CacheReadInputTokens, msg.Usage.CacheCreationInputTokens}; got != tt.usage {
				t.Errorf("usage %v, want %v", got, tt.usage)
			}
			if len(msg.Content) != len(tt.blocks) {
				t.Fatalf("%d blocks, want %d\n%s", len(msg.Content), len(tt.blocks), stream)
			}
			for i, want := range tt.blocks {
				c := msg.Content[i]
				got := block{typ: c.Type, signature: c.Signature, name: c.Name}
				switch c.Type {
				case "text":
					got.text = c.Text
				case "thinking":
					got.text = c.Thinking
				case "tool_use":
					got.input = anthCompact(c.Input)
					if want.id == "" && strings.HasPrefix(c.ID, "toolu_") {
						got.id = ""
					} else {
						got.id = c.ID
					}
				}
				if got != want {
					t.Errorf("block %d = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// Decoding an Anthropic stream and encoding it again gives a client the
// same message as the original stream.
func TestAnthropicStreamRoundTrip(t *testing.T) {
	for _, name := range []string{"stream_text.sse", "stream_tool_use.sse", "stream_thinking.sse"} {
		t.Run(name, func(t *testing.T) {
			orig := anthFixture(t, name)
			ds, _, err := anthDecodeStream(t, orig, false)
			if err != nil {
				t.Fatal(err)
			}
			want, err := anthSDKAccumulate(t, orig)
			if err != nil {
				t.Fatal(err)
			}
			got, err := anthSDKAccumulate(t, anthEncodeStream(&Request{}, ds))
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != want.ID || got.Model != want.Model || got.StopReason != want.StopReason || got.StopSequence != want.StopSequence {
				t.Errorf("message %q %q %q %q, want %q %q %q %q", got.ID, got.Model, got.StopReason, got.StopSequence, want.ID, want.Model, want.StopReason, want.StopSequence)
			}
			if got.Usage.InputTokens != want.Usage.InputTokens || got.Usage.OutputTokens != want.Usage.OutputTokens ||
				got.Usage.CacheReadInputTokens != want.Usage.CacheReadInputTokens || got.Usage.CacheCreationInputTokens != want.Usage.CacheCreationInputTokens {
				t.Errorf("usage %+v, want %+v", got.Usage, want.Usage)
			}
			if len(got.Content) != len(want.Content) {
				t.Fatalf("%d blocks, want %d", len(got.Content), len(want.Content))
			}
			for i := range want.Content {
				g, w := got.Content[i], want.Content[i]
				if g.Type != w.Type || g.Text != w.Text || g.Thinking != w.Thinking || g.Signature != w.Signature ||
					g.ID != w.ID || g.Name != w.Name || anthCompact(g.Input) != anthCompact(w.Input) {
					t.Errorf("block %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestAnthropicStreamEncodeEndOnce(t *testing.T) {
	enc := Anthropic.NewEncoder(nil)
	out := enc.End(nil)
	if n := len(out); n == 0 || len(enc.End(nil)) != 0 || len(enc.Delta(nil, &Delta{Text: "late"})) != 0 {
		t.Errorf("End is not once: %d bytes first", n)
	}
	if _, err := anthSDKAccumulate(t, out); err != nil {
		t.Error(err)
	}
}

func TestAnthropicStreamEncodeAllocs(t *testing.T) {
	enc := Anthropic.NewEncoder(&Request{Model: "m"})
	buf := make([]byte, 0, 4096)
	buf = enc.Delta(buf, &Delta{Text: "warm up"})
	d := &Delta{Text: "some text with \"quotes\" and ünïcode"}
	allocs := testing.AllocsPerRun(100, func() {
		buf = enc.Delta(buf[:0], d)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per text delta", allocs)
	}
}

func TestAnthropicEncodeError(t *testing.T) {
	tests := []struct {
		status int
		kind   string
		want   string
	}{
		{400, "", "invalid_request_error"},
		{401, "", "authentication_error"},
		{402, "", "billing_error"},
		{403, "", "permission_error"},
		{404, "", "not_found_error"},
		{413, "", "request_too_large"},
		{422, "", "invalid_request_error"},
		{429, "", "rate_limit_error"},
		{500, "", "api_error"},
		{502, "", "api_error"},
		{503, "", "overloaded_error"},
		{504, "", "timeout_error"},
		{529, "", "overloaded_error"},
		{429, "rate_limited", "rate_limit_error"}, // a gateway code gives way
		{500, "overloaded_error", "overloaded_error"},
	}
	for _, tt := range tests {
		body := Anthropic.EncodeError(tt.status, tt.kind, "bad \"thing\"\n")
		var got struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%d: %v: %s", tt.status, err, body)
		}
		if got.Type != "error" || got.Error.Type != tt.want || got.Error.Message != "bad \"thing\"\n" {
			t.Errorf("%d %q: %s", tt.status, tt.kind, body)
		}
		if msg := Anthropic.ErrorMessage(body); msg != "bad \"thing\"\n" {
			t.Errorf("ErrorMessage of our own body = %q", msg)
		}
	}
}

func TestAnthropicErrorMessage(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{string(anthFixture(t, "error_overloaded.json")), "Overloaded"},
		{`{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`, "Incorrect API key provided"},
		{`{"error":"plain words"}`, "plain words"},
		{`{"id":"msg_1","type":"message"}`, ""},
		{`{"error":{"message":5}}`, ""},
		{`not json`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		if got := Anthropic.ErrorMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("ErrorMessage(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestAnthropicAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted" \back\slash`, "\x00\x01\x1f\x7f", "tab\tnew\nline\rret\b\f",
		"ünïcödé 日本 🎉", "\u2028\u2029", "<html>&amp;", "bad \xff utf8 \xc3", "é\xe2\x82",
	} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%q → %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want && !anthUTF8Replaced(s, got) {
			t.Errorf("%q → %s → %q", s, b, got)
		}
	}
}

// anthUTF8Replaced accepts encoding/json's replacement of each invalid byte,
// which strings.ToValidUTF8 collapses into one.
func anthUTF8Replaced(s, got string) bool {
	want, _ := json.Marshal(s)
	var std string
	_ = json.Unmarshal(want, &std)
	return std == got
}

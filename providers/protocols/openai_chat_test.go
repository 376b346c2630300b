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

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

func chatFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "openai_chat", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chatSSEData returns the data payloads of an SSE stream, the way the relay
// hands them to a Decoder: comments skipped, multi-line data joined.
func chatSSEData(stream []byte) [][]byte {
	var out [][]byte
	norm := strings.ReplaceAll(string(stream), "\r\n", "\n")
	for _, ev := range strings.Split(norm, "\n\n") {
		var data []string
		for _, line := range strings.Split(ev, "\n") {
			if v, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " "))
			}
		}
		if len(data) > 0 {
			out = append(out, []byte(strings.Join(data, "\n")))
		}
	}
	return out
}

// chatSame fails with both values as JSON when they differ.
func chatSame(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("got:\n%s\nwant:\n%s", g, w)
	}
}

// chatSameJSON compares two JSON texts by value.
func chatSameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is not JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func chatF(v float64) *float64 { return &v }
func chatB(v bool) *bool       { return &v }

func TestChatDecodeRequestFixture(t *testing.T) {
	r, err := OpenAIChat.DecodeRequest(chatFixture(t, "request_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{
		Model: "gpt-4o",
		Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "You are a weather bot."}}},
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Answer in metric units."}}},
			{Role: RoleUser, Parts: []Part{
				{Kind: PartText, Text: "What is the weather where this photo was taken, and in Paris?"},
				{Kind: PartImage, URL: "https://example.com/photo.jpg"},
				{Kind: PartImage, MediaType: "image/png", Data: "iVBORw0KGgo="},
			}},
			{Role: RoleAssistant,
				Parts: []Part{{Kind: PartThinking, Text: "The photo shows Lyon."}},
				ToolCalls: []ToolCall{
					{ID: "call_abc", Name: "get_weather", Arguments: `{"city":"Lyon"}`},
					{ID: "call_def", Name: "get_weather", Arguments: `{"city":"Paris"}`},
				}},
			{Role: RoleTool, ToolCallID: "call_abc", Parts: []Part{{Kind: PartText, Text: "18°C, sunny"}}},
			{Role: RoleTool, ToolCallID: "call_def", Parts: []Part{{Kind: PartText, Text: "15°C, "}, {Kind: PartText, Text: "rain"}}},
			{Role: RoleAssistant, Parts: []Part{{Kind: PartText, Text: "Lyon: 18°C and sunny. Paris: 15°C with rain."}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Thanks! As JSON please."}}},
		},
		MaxTokens:   512, // max_completion_tokens wins over max_tokens
		Temperature: chatF(0.2),
		TopP:        chatF(0.9),
		Stop:        []string{"\n\n", "END"},
		Stream:      true,
		StreamUsage: true,
		Tools: []Tool{{
			Name:        "get_weather",
			Description: "Current weather for a city",
			Parameters:  json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`),
		}},
		ToolChoice:        &ToolChoice{Mode: ToolNamed, Name: "get_weather"},
		ParallelToolCalls: chatB(false),
		Format: &Format{Kind: FormatJSONSchema, Name: "weather", Strict: true,
			Schema: json.RawMessage(`{"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}`)},
		Reasoning: &Reasoning{Effort: "low"},
		User:      "user-1234",
	}
	chatSame(t, r, want)
}

func TestChatDecodeRequest(t *testing.T) {
	text := func(role, s string) Message { return Message{Role: role, Parts: []Part{{Kind: PartText, Text: s}}} }
	hi := []Message{text(RoleUser, "hi")}
	tests := []struct {
		name string
		body string // messages default to one user "hi" when the body has none
		want *Request
	}{
		{"minimal", `{"model":"m"}`, &Request{Model: "m", Messages: hi}},
		{"max_tokens alone", `{"max_tokens":64}`, &Request{MaxTokens: 64, Messages: hi}},
		{"max_completion_tokens alone", `{"max_completion_tokens":65}`, &Request{MaxTokens: 65, Messages: hi}},
		{"stop string", `{"stop":"END"}`, &Request{Stop: []string{"END"}, Messages: hi}},
		{"stop array", `{"stop":["a","b"]}`, &Request{Stop: []string{"a", "b"}, Messages: hi}},
		{"stop null", `{"stop":null}`, &Request{Messages: hi}},
		{"stream without usage", `{"stream":true}`, &Request{Stream: true, Messages: hi}},
		{"stream with usage", `{"stream":true,"stream_options":{"include_usage":true}}`, &Request{Stream: true, StreamUsage: true, Messages: hi}},
		{"temperature zero kept", `{"temperature":0}`, &Request{Temperature: chatF(0), Messages: hi}},
		{"tool_choice auto", `{"tool_choice":"auto"}`, &Request{ToolChoice: &ToolChoice{Mode: ToolAuto}, Messages: hi}},
		{"tool_choice none", `{"tool_choice":"none"}`, &Request{ToolChoice: &ToolChoice{Mode: ToolNone}, Messages: hi}},
		{"tool_choice required", `{"tool_choice":"required"}`, &Request{ToolChoice: &ToolChoice{Mode: ToolRequired}, Messages: hi}},
		{"tool_choice named", `{"tool_choice":{"type":"function","function":{"name":"f"}}}`, &Request{ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "f"}, Messages: hi}},
		{"parallel_tool_calls", `{"parallel_tool_calls":true}`, &Request{ParallelToolCalls: chatB(true), Messages: hi}},
		{"tool without parameters", `{"tools":[{"type":"function","function":{"name":"now"}}]}`, &Request{Tools: []Tool{{Name: "now"}}, Messages: hi}},
		{"response_format text", `{"response_format":{"type":"text"}}`, &Request{Messages: hi}},
		{"response_format json_object", `{"response_format":{"type":"json_object"}}`, &Request{Format: &Format{Kind: FormatJSON}, Messages: hi}},
		{"response_format json_schema", `{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}`,
			&Request{Format: &Format{Kind: FormatJSONSchema, Name: "x", Schema: json.RawMessage(`{"type":"object"}`)}, Messages: hi}},
		{"reasoning_effort", `{"reasoning_effort":"high"}`, &Request{Reasoning: &Reasoning{Effort: "high"}, Messages: hi}},
		// gpt-5.1's "none" turns reasoning off.
		{"reasoning_effort none", `{"reasoning_effort":"none"}`, &Request{Messages: hi}},
		{"user", `{"user":"u1"}`, &Request{User: "u1", Messages: hi}},
		{"safety_identifier", `{"safety_identifier":"s1"}`, &Request{User: "s1", Messages: hi}},
		{"developer is system", `{"messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}]}`,
			&Request{Messages: []Message{text(RoleSystem, "be brief"), text(RoleUser, "hi")}}},
		{"system in the middle stays in place", `{"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"},{"role":"user","content":"c"}]}`,
			&Request{Messages: []Message{text(RoleUser, "a"), text(RoleSystem, "b"), text(RoleUser, "c")}}},
		{"multi-turn", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`,
			&Request{Messages: []Message{text(RoleUser, "a"), text(RoleAssistant, "b"), text(RoleUser, "c")}}},
		{"image url", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}]}`,
			&Request{Messages: []Message{{Role: RoleUser, Parts: []Part{{Kind: PartImage, URL: "http://x/y.png"}}}}}},
		{"image base64", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]}]}`,
			&Request{Messages: []Message{{Role: RoleUser, Parts: []Part{{Kind: PartImage, MediaType: "image/jpeg", Data: "/9j/4AAQ"}}}}}},
		{"assistant null content with calls", `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}]}`,
			&Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: `{"a":1}`}}}}}},
		{"assistant empty arguments", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":""}}]}]}`,
			&Request{Messages: []Message{{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: `{}`}}}}}},
		{"assistant refusal part", `{"messages":[{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]}]}`,
			&Request{Messages: []Message{text(RoleAssistant, "no")}}},
		{"deepseek reasoning_content", `{"messages":[{"role":"assistant","content":"4","reasoning_content":"2+2"}]}`,
			&Request{Messages: []Message{{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "2+2"}, {Kind: PartText, Text: "4"}}}}}},
		{"tool result string", `{"messages":[{"role":"tool","tool_call_id":"c1","content":"42"}]}`,
			&Request{Messages: []Message{{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "42"}}}}}},
		{"tool result parts", `{"messages":[{"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"42"}]}]}`,
			&Request{Messages: []Message{{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "42"}}}}}},
		{"empty user content", `{"messages":[{"role":"user","content":""}]}`, &Request{Messages: []Message{{Role: RoleUser}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			if !strings.Contains(body, `"messages"`) {
				body = strings.Replace(body, "{", `{"messages":[{"role":"user","content":"hi"}],`, 1)
				body = strings.Replace(body, ",}", "}", 1)
			}
			r, err := OpenAIChat.DecodeRequest([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			chatSame(t, r, tt.want)
		})
	}
}

func TestChatDecodeRequestErrors(t *testing.T) {
	tests := []struct {
		body string
		want string // in the message
	}{
		{`{"model":`, "request body: invalid JSON"},
		{`[1,2]`, "request body: expected a JSON object"},
		{`nonsense`, "request body: invalid JSON"},
		{``, "request body: expected a JSON object, got nothing"},
		{`{"model":"m"}`, "messages: must be a non-empty array"},
		{`{"messages":[]}`, "messages: must be a non-empty array"},
		{`{"messages":"hi"}`, "messages: expected an array"},
		{`{"messages":[1]}`, "messages[0]: expected a JSON object"},
		{`{"messages":[{"content":"x"}]}`, "messages[0].role: required"},
		{`{"messages":[{"role":"user","content":"a"},{"role":"wizard","content":"x"}]}`, `messages[1].role: unknown role "wizard"`},
		{`{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":42}]}`, "messages[2].content: expected a string or an array"},
		{`{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, `messages[0].content[0].type: content part type "input_audio"`},
		{`{"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, `messages[0].content[0].type: content part type "image_url"`},
		{`{"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text: required"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, "messages[0].content[0].image_url.url: required"},
		{`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0].image_url.url: a data URI"},
		{`{"messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id: required"},
		{`{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f"}}]}]}`, "messages[0].tool_calls[0].id: required"},
		{`{"messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{}}]}]}`, "messages[0].tool_calls[0].function.name: required"},
		{`{"messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":7}}]}]}`, "messages[0].tool_calls[0].function.arguments: expected a string"},
		{`{"messages":[{"role":"user","content":"a"}],"temperature":"hot"}`, "temperature: expected a number, got string"},
		{`{"messages":[{"role":"user","content":"a"}],"max_tokens":-1}`, "must not be negative"},
		{`{"messages":[{"role":"user","content":"a"}],"stop":5}`, "stop: expected a string or an array of strings"},
		{`{"messages":[{"role":"user","content":"a"}],"tools":[{"type":"web_search"}]}`, `tools[0].type: unsupported tool type "web_search"`},
		{`{"messages":[{"role":"user","content":"a"}],"tools":[{"type":"function","function":{}}]}`, "tools[0].function.name: required"},
		{`{"messages":[{"role":"user","content":"a"}],"tool_choice":"sometimes"}`, `tool_choice: unknown value "sometimes"`},
		{`{"messages":[{"role":"user","content":"a"}],"tool_choice":{"type":"function"}}`, "tool_choice.function.name: required"},
		{`{"messages":[{"role":"user","content":"a"}],"response_format":{"type":"yaml"}}`, `response_format.type: unknown type "yaml"`},
		{`{"messages":[{"role":"user","content":"a"}],"response_format":{"type":"json_schema"}}`, "response_format.json_schema: required"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := OpenAIChat.DecodeRequest([]byte(tt.body))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not a *Error", err, err)
			}
			if e.Status != http.StatusBadRequest || !strings.Contains(e.Msg, tt.want) {
				t.Fatalf("got %d %q, want 400 containing %q", e.Status, e.Msg, tt.want)
			}
		})
	}
}

func TestChatEncodeRequest(t *testing.T) {
	user := Message{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "hi"}}}
	weather := Tool{Name: "get_weather", Description: "Weather", Parameters: json.RawMessage(`{"type":"object"}`)}
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"minimal", Request{Model: "gpt-4o", Messages: []Message{user}},
			`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`},
		{"sampling and limits", Request{Model: "m", Messages: []Message{user}, MaxTokens: 100, Temperature: chatF(0), TopP: chatF(0.5), Stop: []string{"x"}, User: "u"},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"temperature":0,"top_p":0.5,"stop":["x"],"user":"u"}`},
		// OpenAI's reasoning models refuse max_tokens.
		{"reasoning effort", Request{Model: "o3", Messages: []Message{user}, MaxTokens: 100, Reasoning: &Reasoning{Effort: "high"}},
			`{"model":"o3","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100,"reasoning_effort":"high"}`},
		{"reasoning budget", Request{Model: "o3", Messages: []Message{user}, Reasoning: &Reasoning{BudgetTokens: 2000}},
			`{"model":"o3","messages":[{"role":"user","content":"hi"}],"reasoning_effort":"low"}`},
		{"stream asks for usage", Request{Model: "m", Messages: []Message{user}, Stream: true},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`},
		{"system, multi-part text joined", Request{Model: "m", Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "a"}, {Kind: PartText, Text: "b"}}}, user}},
			`{"model":"m","messages":[{"role":"system","content":"a\nb"},{"role":"user","content":"hi"}]}`},
		{"images", Request{Model: "m", Messages: []Message{{Role: RoleUser, Parts: []Part{
			{Kind: PartText, Text: "look"}, {Kind: PartImage, URL: "https://x/a.png"}, {Kind: PartImage, MediaType: "image/png", Data: "AAAA"}}}}},
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/a.png"}},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`},
		{"tool loop, thinking dropped", Request{Model: "m", Messages: []Message{user,
			{Role: RoleAssistant, Parts: []Part{{Kind: PartThinking, Text: "hmm", Signature: "sig"}}, ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: `{"a":1}`}, {ID: "c2", Name: "g"}}},
			{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "one"}}},
			{Role: RoleTool, ToolCallID: "c2", ToolError: true, Parts: []Part{{Kind: PartText, Text: "failed"}}},
			{Role: RoleAssistant, Parts: []Part{{Kind: PartText, Text: "done"}}}}},
			`{"model":"m","messages":[{"role":"user","content":"hi"},
			 {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},
			 {"role":"tool","content":"one","tool_call_id":"c1"},{"role":"tool","content":"failed","tool_call_id":"c2"},
			 {"role":"assistant","content":"done"}]}`},
		// A tool message cannot hold images; they follow the tool messages.
		{"tool result image", Request{Model: "m", Messages: []Message{
			{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "shot", Arguments: "{}"}}},
			{Role: RoleTool, ToolCallID: "c1", Parts: []Part{{Kind: PartText, Text: "here"}, {Kind: PartImage, MediaType: "image/png", Data: "AA"}}},
			user}},
			`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"shot","arguments":"{}"}}]},
			 {"role":"tool","content":"here","tool_call_id":"c1"},
			 {"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]},
			 {"role":"user","content":"hi"}]}`},
		{"tools and named choice", Request{Model: "m", Messages: []Message{user}, Tools: []Tool{weather, {Name: "now"}},
			ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "get_weather"}, ParallelToolCalls: chatB(false)},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object"}}},{"type":"function","function":{"name":"now"}}],
			 "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}`},
		{"tool_choice required", Request{Model: "m", Messages: []Message{user}, Tools: []Tool{weather}, ToolChoice: &ToolChoice{Mode: ToolRequired}},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object"}}}],"tool_choice":"required"}`},
		// OpenAI answers 400 to tool_choice or parallel_tool_calls without tools.
		{"tool_choice without tools", Request{Model: "m", Messages: []Message{user}, ToolChoice: &ToolChoice{Mode: ToolNone}, ParallelToolCalls: chatB(true)},
			`{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"json_object", Request{Model: "m", Messages: []Message{user}, Format: &Format{Kind: FormatJSON}},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`},
		{"json_schema", Request{Model: "m", Messages: []Message{user}, Format: &Format{Kind: FormatJSONSchema, Schema: json.RawMessage(`{"type":"object"}`), Strict: true}},
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"response","schema":{"type":"object"},"strict":true}}}`},
		{"top_k dropped", Request{Model: "m", Messages: []Message{user}, TopK: new(int)},
			`{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := OpenAIChat.EncodeRequest(&tt.req)
			if err != nil {
				t.Fatal(err)
			}
			chatSameJSON(t, body, tt.want)
		})
	}
}

func TestChatEncodeRequestErrors(t *testing.T) {
	for _, r := range []Request{
		{Messages: []Message{{Role: "robot"}}},
		{Messages: []Message{{Role: RoleUser}}, Tools: []Tool{{Name: "f", Parameters: json.RawMessage(`{bad`)}}},
	} {
		_, err := OpenAIChat.EncodeRequest(&r)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("got %v, want a *Error", err)
		}
	}
}

// The fixture survives decode → encode → decode, bar what OpenAI cannot
// carry back (thinking) and multi-part text, which is joined.
func TestChatRequestRoundTrip(t *testing.T) {
	first, err := OpenAIChat.DecodeRequest(chatFixture(t, "request_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := OpenAIChat.EncodeRequest(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenAIChat.DecodeRequest(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	first.Messages[3].Parts = nil
	first.Messages[5].Parts = []Part{{Kind: PartText, Text: "15°C, \nrain"}}
	// json.RawMessage is compacted on the way out.
	for _, raw := range []*json.RawMessage{&first.Tools[0].Parameters, &first.Format.Schema} {
		var b bytes.Buffer
		_ = json.Compact(&b, *raw)
		*raw = b.Bytes()
	}
	chatSame(t, second, first)
}

func TestChatDecodeResponse(t *testing.T) {
	tests := []struct {
		file string
		want *Response
	}{
		{"response_tool_calls.json", &Response{
			ID: "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", Model: "gpt-4o-2024-08-06", Created: 1741570283,
			ToolCalls: []ToolCall{
				{ID: "call_DdmO9pD3xa9XTPNJ32zg2hcA", Name: "get_weather", Arguments: `{"city":"Lyon"}`},
				{ID: "call_ABPqKcWc2fmLPiVkt4cfqyy0", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			},
			Finish: FinishToolCalls,
			Usage:  Usage{Input: 1117, Output: 46, CacheRead: 1024}, UsageSeen: true,
		}},
		// DeepSeek: blank lines before the body, reasoning_content, and the
		// cache hit only in prompt_cache_hit_tokens.
		{"response_deepseek_reasoner.json", &Response{
			ID: "930c60df-bf64-41c9-a88e-3ec75f81e00e", Model: "deepseek-reasoner", Created: 1737613045,
			Parts: []Part{
				{Kind: PartThinking, Text: "Compare the tenths: 1 < 8, so 9.11 < 9.8."},
				{Kind: PartText, Text: "9.11 is smaller than 9.8."},
			},
			Finish: FinishStop,
			Usage:  Usage{Input: 17, Output: 260, CacheRead: 12, Reasoning: 242}, UsageSeen: true,
		}},
		{"response_openrouter_reasoning.json", &Response{
			ID: "gen-1747070291-TTqxYd8RhvFWiqsJpoX7", Model: "anthropic/claude-3.7-sonnet", Created: 1747070291,
			Parts: []Part{
				{Kind: PartThinking, Text: "Let me think about this."},
				{Kind: PartText, Text: "The answer is"},
			},
			Finish: FinishLength,
			Usage:  Usage{Input: 40, Output: 20}, UsageSeen: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, err := OpenAIChat.DecodeResponse(chatFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			chatSame(t, r, tt.want)
		})
	}
}

func TestChatDecodeResponseFinishReasons(t *testing.T) {
	for reason, want := range map[string]Finish{
		`"stop"`: FinishStop, `"length"`: FinishLength, `"tool_calls"`: FinishToolCalls,
		`"content_filter"`: FinishContentFilter, `"function_call"`: FinishToolCalls,
		`"eos"`: FinishStop, `null`: FinishStop,
	} {
		body := `{"choices":[{"index":0,"message":{"content":"x"},"finish_reason":` + reason + `}]}`
		r, err := OpenAIChat.DecodeResponse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if r.Finish != want {
			t.Errorf("finish_reason %s: got %q, want %q", reason, r.Finish, want)
		}
	}
}

func TestChatDecodeResponseEdges(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Response // nil: an error is wanted
	}{
		{"no choices", `{"id":"x","choices":[]}`, nil},
		{"not JSON", `<html>`, nil},
		{"error body", `{"error":{"message":"overloaded"}}`, nil},
		{"no usage", `{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}`,
			&Response{Parts: []Part{{Kind: PartText, Text: "hi"}}, Finish: FinishStop}},
		{"refusal", `{"choices":[{"message":{"content":null,"refusal":"I can't."},"finish_reason":"stop"}]}`,
			&Response{Parts: []Part{{Kind: PartText, Text: "I can't."}}, Finish: FinishStop}},
		{"content as parts", `{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":"stop"}]}`,
			&Response{Parts: []Part{{Kind: PartText, Text: "ab"}}, Finish: FinishStop}},
		{"choice 0 of several", `{"choices":[{"index":1,"message":{"content":"B"}},{"index":0,"message":{"content":"A"},"finish_reason":"stop"}]}`,
			&Response{Parts: []Part{{Kind: PartText, Text: "A"}}, Finish: FinishStop}},
		{"cached_tokens wins over prompt_cache_hit_tokens", `{"choices":[{"message":{}}],"usage":{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":8,"cache_write_tokens":2},"prompt_cache_hit_tokens":7}}`,
			&Response{Finish: FinishStop, Usage: Usage{Input: 10, Output: 1, CacheRead: 8, CacheWrite: 2}, UsageSeen: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := OpenAIChat.DecodeResponse([]byte(tt.body))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("got %+v, want an error", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			chatSame(t, r, tt.want)
		})
	}
}

func TestChatDecodeResponseLegacyFunctionCall(t *testing.T) {
	r, err := OpenAIChat.DecodeResponse([]byte(`{"choices":[{"message":{"content":null,"function_call":{"name":"f","arguments":"{}"}},"finish_reason":"function_call"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ToolCalls) != 1 || r.ToolCalls[0].Name != "f" || !strings.HasPrefix(r.ToolCalls[0].ID, "call_") || r.Finish != FinishToolCalls {
		t.Fatalf("got %+v", r)
	}
}

func TestChatEncodeResponse(t *testing.T) {
	r := &Response{
		ID: "msg_01", Model: "claude-sonnet-4", Created: 1700000000,
		Parts: []Part{
			{Kind: PartThinking, Text: "think", Signature: "sig"},
			{Kind: PartText, Text: "Hello "},
			{Kind: PartText, Text: "<world> & \"you\""},
		},
		ToolCalls: []ToolCall{{ID: "toolu_1", Name: "f", Arguments: `{"a":1}`}},
		Finish:    FinishToolCalls,
		Usage:     Usage{Input: 100, Output: 20, CacheRead: 60, CacheWrite: 10, Reasoning: 5},
		UsageSeen: true,
	}
	body, err := OpenAIChat.EncodeResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	chatSameJSON(t, body, `{"id":"chatcmpl-msg_01","object":"chat.completion","created":1700000000,"model":"claude-sonnet-4",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello <world> & \"you\"","reasoning_content":"think",
		  "tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
		  "logprobs":null,"finish_reason":"tool_calls"}],
		"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,
		  "prompt_tokens_details":{"cached_tokens":60,"cache_write_tokens":10},"completion_tokens_details":{"reasoning_tokens":5}}}`)

	// The official SDK reads it.
	var cc openai.ChatCompletion
	if err := json.Unmarshal(body, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.ID != "chatcmpl-msg_01" || cc.Model != "claude-sonnet-4" || len(cc.Choices) != 1 {
		t.Fatalf("sdk read %+v", cc)
	}
	c := cc.Choices[0]
	if c.Message.Content != `Hello <world> & "you"` || c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 ||
		c.Message.ToolCalls[0].Function.Arguments != `{"a":1}` || c.Message.ToolCalls[0].ID != "toolu_1" {
		t.Fatalf("sdk read %+v", c)
	}
	if cc.Usage.TotalTokens != 120 || cc.Usage.PromptTokensDetails.CachedTokens != 60 || cc.Usage.CompletionTokensDetails.ReasoningTokens != 5 {
		t.Fatalf("sdk usage %+v", cc.Usage)
	}
}

func TestChatEncodeResponseDefaults(t *testing.T) {
	tests := []struct {
		name    string
		r       Response
		id      string // "" = random chatcmpl-…
		content string // JSON
		finish  string
	}{
		{"no text is null content", Response{ID: "chatcmpl-1"}, "chatcmpl-1", "null", "stop"},
		{"calls without finish", Response{ID: "x", ToolCalls: []ToolCall{{ID: "c", Name: "f"}}}, "chatcmpl-x", "null", "tool_calls"},
		{"empty id", Response{Parts: []Part{{Kind: PartText, Text: "hi"}}, Finish: FinishLength}, "", `"hi"`, "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := OpenAIChat.EncodeResponse(&tt.r)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				ID      string `json:"id"`
				Created int64  `json:"created"`
				Choices []struct {
					Message map[string]json.RawMessage `json:"message"`
					Finish  string                     `json:"finish_reason"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatal(err)
			}
			if tt.id != "" && out.ID != tt.id || tt.id == "" && (!strings.HasPrefix(out.ID, "chatcmpl-") || len(out.ID) < 20) {
				t.Errorf("id %q, want %q", out.ID, tt.id)
			}
			if out.Created == 0 {
				t.Error("created is 0")
			}
			m := out.Choices[0].Message
			if string(m["content"]) != tt.content || out.Choices[0].Finish != tt.finish {
				t.Errorf("got %s", body)
			}
			if _, ok := m["reasoning_content"]; ok {
				t.Errorf("reasoning_content without thinking: %s", body)
			}
		})
	}
}

func chatDecodeStream(t *testing.T, stream []byte) (ds []Delta, done bool) {
	t.Helper()
	dec := OpenAIChat.NewDecoder()
	for _, data := range chatSSEData(stream) {
		var err error
		ds, done, err = dec.Event(ds, "", data)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	return ds, done
}

func TestChatDecoderToolCallStream(t *testing.T) {
	ds, done := chatDecodeStream(t, chatFixture(t, "stream_tool_calls.sse"))
	if !done {
		t.Fatal("[DONE] not seen")
	}
	want := []Delta{
		{ID: "chatcmpl-BXqqgS6lfZCBqRH0Wy3S2ulbq3Ww5", Model: "gpt-4o-2024-08-06"},
		{Tool: &ToolDelta{Index: 0, ID: "call_aLkpGVzuUiwTmrHJUBz8K3Hr", Name: "get_weather"}},
		{Tool: &ToolDelta{Index: 0, Arguments: `{"ci`}},
		{Tool: &ToolDelta{Index: 0, Arguments: `ty": "Lyon"}`}},
		{Tool: &ToolDelta{Index: 1, ID: "call_rP8V6jhCmaNEbdNqDDUr3BaE", Name: "get_weather"}},
		{Tool: &ToolDelta{Index: 1, Arguments: `{"city": "Paris"}`}},
		{Finish: FinishToolCalls},
		{Usage: &Usage{Input: 80, Output: 51, CacheRead: 64}},
	}
	chatSame(t, ds, want)
}

func TestChatDecoderDeepSeekStream(t *testing.T) {
	ds, done := chatDecodeStream(t, chatFixture(t, "stream_deepseek_reasoning.sse"))
	if !done {
		t.Fatal("[DONE] not seen")
	}
	want := []Delta{
		{ID: "0e2c5b6a-5b8e-4c0e-9f63-1b0f5d1e2a77", Model: "deepseek-reasoner"},
		{Thinking: "Compare "},
		{Thinking: "the tenths."},
		{Text: "9.11 is "},
		{Text: "smaller."},
		// DeepSeek puts usage on the finish chunk.
		{Finish: FinishStop, Usage: &Usage{Input: 17, Output: 260, CacheRead: 12, Reasoning: 242}},
	}
	chatSame(t, ds, want)
}

func TestChatDecoderEdges(t *testing.T) {
	tests := []struct {
		name    string
		events  []string
		want    []Delta
		wantErr string
	}{
		{"azure empty first chunk; model from the first non-empty", []string{
			`{"id":"","model":"","choices":[],"prompt_filter_results":[]}`,
			`{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"}}]}`,
			`{"id":"chatcmpl-1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"!"}}]}`,
		}, []Delta{{ID: "chatcmpl-1", Model: "gpt-4o", Text: "hi"}, {Text: "!"}}, ""},
		{"openrouter reasoning and usage on the finish chunk", []string{
			`{"id":"gen-1","model":"x/y","choices":[{"index":0,"delta":{"reasoning":"r"}}]}`,
			`{"id":"gen-1","model":"x/y","choices":[{"index":0,"delta":{"content":""},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		}, []Delta{{ID: "gen-1", Model: "x/y", Thinking: "r"}, {Finish: FinishLength, Usage: &Usage{Input: 3, Output: 4}}}, ""},
		{"gemini usage twice: each replaces", []string{
			`{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}`,
		}, []Delta{{Text: "a", Usage: &Usage{Input: 3, Output: 1}}, {Finish: FinishStop, Usage: &Usage{Input: 3, Output: 2}}}, ""},
		{"only choice 0 is read", []string{
			`{"choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]}`,
		}, []Delta{{Text: "A"}}, ""},
		// Gemini's OpenAI surface has given parallel calls all index 0.
		{"same index, new id is a new call", []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]}}]}`,
		}, []Delta{
			{Tool: &ToolDelta{Index: 0, ID: "a", Name: "f", Arguments: "{}"}},
			{Tool: &ToolDelta{Index: 1, ID: "b", Name: "g", Arguments: "{}"}},
		}, ""},
		{"no index: id opens a call, fragments continue it", []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\""}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}`,
		}, []Delta{
			{Tool: &ToolDelta{Index: 0, ID: "a", Name: "f", Arguments: `{"x"`}},
			{Tool: &ToolDelta{Index: 0, Arguments: ":1}"}},
			{Tool: &ToolDelta{Index: 1, ID: "b", Name: "g", Arguments: "{}"}},
		}, ""},
		{"several calls in one chunk, then finish", []string{
			`{"choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}},{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
		}, []Delta{
			{Text: "x"},
			{Tool: &ToolDelta{Index: 0, ID: "a", Name: "f", Arguments: "{}"}},
			{Tool: &ToolDelta{Index: 1, ID: "b", Name: "g", Arguments: "{}"}},
			{Finish: FinishToolCalls},
		}, ""},
		{"error chunk", []string{`{"error":{"message":"Provider returned error","code":502}}`}, nil, "Provider returned error"},
		{"bad JSON", []string{`{"choices":`}, nil, "openai chat stream"},
		{"blank data is nothing", []string{"", "  "}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := OpenAIChat.NewDecoder()
			var ds []Delta
			var err error
			for _, ev := range tt.events {
				if ds, _, err = dec.Event(ds, "", []byte(ev)); err != nil {
					break
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			chatSame(t, ds, tt.want)
		})
	}
}

func TestChatDecoderGeneratesMissingCallID(t *testing.T) {
	ds, _, err := OpenAIChat.NewDecoder().Event(nil, "", []byte(`{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":""}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || !strings.HasPrefix(ds[0].Tool.ID, "call_") || ds[0].Tool.Name != "f" {
		t.Fatalf("got %+v", ds)
	}
}

// chatReadWithSDK parses a stream the way openai-go's client does and
// fails on anything it rejects.
func chatReadWithSDK(t *testing.T, stream []byte) (openai.ChatCompletionAccumulator, []openai.ChatCompletionChunk) {
	t.Helper()
	res := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": []string{OpenAIChat.StreamContentType()}},
		Body:       io.NopCloser(bytes.NewReader(stream)),
	}
	s := ssestream.NewStream[openai.ChatCompletionChunk](ssestream.NewDecoder(res), nil)
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for s.Next() {
		c := s.Current()
		if !acc.AddChunk(c) {
			t.Fatalf("accumulator refused chunk %s", c.RawJSON())
		}
		chunks = append(chunks, c)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("sdk: %v\n%s", err, stream)
	}
	if !bytes.HasSuffix(stream, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream does not end with [DONE]:\n%s", stream)
	}
	return acc, chunks
}

func TestChatEncoderSDK(t *testing.T) {
	enc := OpenAIChat.NewEncoder(&Request{Model: "req-model", Stream: true, StreamUsage: true})
	var out []byte
	for _, d := range []Delta{
		{ID: "msg_1", Model: "claude-sonnet-4"},
		{Thinking: "let me see"},
		{Signature: "sig"},
		{Text: "Calling \"tools\"\n"},
		{Tool: &ToolDelta{Index: 0, ID: "toolu_a", Name: "get_weather"}},
		{Tool: &ToolDelta{Index: 0, Arguments: `{"city":`}},
		{Tool: &ToolDelta{Index: 0, Arguments: `"Lyon"}`}},
		{Tool: &ToolDelta{Index: 1, ID: "toolu_b", Name: "now", Arguments: `{}`}},
		{Finish: FinishToolCalls, Usage: &Usage{Input: 10, Output: 3}},
		{Usage: &Usage{Input: 10, Output: 7, CacheRead: 4, Reasoning: 2}},
	} {
		out = enc.Delta(out, &d)
	}
	out = enc.End(out)
	out = enc.End(out) // a second End writes nothing

	acc, chunks := chatReadWithSDK(t, out)
	if acc.ID != "chatcmpl-msg_1" || acc.Model != "claude-sonnet-4" {
		t.Fatalf("id %q model %q", acc.ID, acc.Model)
	}
	msg := acc.Choices[0].Message
	if msg.Content != "Calling \"tools\"\n" || msg.Role != "assistant" {
		t.Fatalf("message %+v", msg)
	}
	if len(msg.ToolCalls) != 2 ||
		msg.ToolCalls[0].ID != "toolu_a" || msg.ToolCalls[0].Function.Name != "get_weather" || msg.ToolCalls[0].Function.Arguments != `{"city":"Lyon"}` ||
		msg.ToolCalls[1].ID != "toolu_b" || msg.ToolCalls[1].Function.Name != "now" || msg.ToolCalls[1].Function.Arguments != `{}` {
		t.Fatalf("tool calls %+v", msg.ToolCalls)
	}
	if acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("finish %q", acc.Choices[0].FinishReason)
	}
	if u := acc.Usage; u.PromptTokens != 10 || u.CompletionTokens != 7 || u.TotalTokens != 17 ||
		u.PromptTokensDetails.CachedTokens != 4 || u.CompletionTokensDetails.ReasoningTokens != 2 {
		t.Fatalf("usage %+v", u)
	}
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 0 {
		t.Fatalf("usage chunk has choices: %s", last.RawJSON())
	}
	// Thinking goes out as DeepSeek's reasoning_content, which OpenAI SDKs
	// keep as an extra field.
	if got := chunks[1].Choices[0].Delta.JSON.ExtraFields["reasoning_content"].Raw(); got != `"let me see"` {
		t.Fatalf("reasoning_content %s in %s", got, chunks[1].RawJSON())
	}
	if n := bytes.Count(out, []byte("data: [DONE]")); n != 1 {
		t.Fatalf("%d [DONE]", n)
	}
}

func TestChatEncoderEmptyStream(t *testing.T) {
	out := OpenAIChat.NewEncoder(&Request{Model: "gpt-4o", StreamUsage: true}).End(nil)
	acc, chunks := chatReadWithSDK(t, out)
	if len(chunks) != 2 {
		t.Fatalf("want role and finish chunks, got %d:\n%s", len(chunks), out)
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" || acc.Choices[0].FinishReason != "stop" || acc.Model != "gpt-4o" {
		t.Fatalf("got\n%s", out)
	}
	// No usage from upstream: no usage chunk rather than zeros.
	if bytes.Contains(out, []byte(`"usage"`)) {
		t.Fatalf("usage chunk without usage:\n%s", out)
	}
}

func TestChatEncoderUsageOnlyWhenAsked(t *testing.T) {
	for _, asked := range []bool{false, true} {
		enc := OpenAIChat.NewEncoder(&Request{Model: "m", StreamUsage: asked})
		out := enc.Delta(nil, &Delta{Text: "hi", Usage: &Usage{Input: 1, Output: 1}})
		out = enc.End(out)
		if got := bytes.Contains(out, []byte(`"usage":{`)); got != asked {
			t.Errorf("include_usage %v: usage chunk %v\n%s", asked, got, out)
		}
		chatReadWithSDK(t, out)
	}
}

// A stream recorded from OpenAI, decoded and encoded again, reads the same
// in the SDK.
func TestChatStreamThroughHub(t *testing.T) {
	ds, _ := chatDecodeStream(t, chatFixture(t, "stream_tool_calls.sse"))
	enc := OpenAIChat.NewEncoder(&Request{Model: "gpt-4o", StreamUsage: true})
	var out []byte
	for i := range ds {
		out = enc.Delta(out, &ds[i])
	}
	got, _ := chatReadWithSDK(t, enc.End(out))
	want, _ := chatReadWithSDK(t, chatFixture(t, "stream_tool_calls.sse"))
	if got.ID != want.ID || got.Model != want.Model || got.Usage.TotalTokens != want.Usage.TotalTokens ||
		got.Choices[0].FinishReason != want.Choices[0].FinishReason {
		t.Fatalf("got %+v\nwant %+v", got.ChatCompletion, want.ChatCompletion)
	}
	for i, c := range want.Choices[0].Message.ToolCalls {
		g := got.Choices[0].Message.ToolCalls[i]
		if g.ID != c.ID || g.Function.Name != c.Function.Name || g.Function.Arguments != c.Function.Arguments {
			t.Fatalf("call %d: got %+v want %+v", i, g, c)
		}
	}
}

func TestChatEncoderAllocations(t *testing.T) {
	enc := OpenAIChat.NewEncoder(&Request{Model: "m"})
	dst := enc.Delta(make([]byte, 0, 4096), &Delta{Text: "warm up"})
	d := &Delta{Text: "a token with \"quotes\" and ünïcödé"}
	allocs := testing.AllocsPerRun(100, func() {
		dst = enc.Delta(dst[:0], d)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per text delta", allocs)
	}
}

func TestChatAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted" \back\slash`, "tab\tnew\nline\rcr", "\x00\x01\x1f\x7f",
		"ünïcödé 日本語 🎉", "bad \xff utf8 \xc3", "line\u2028sep\u2029", "</script>&",
	} {
		b := appendJSONString(nil, s)
		if !json.Valid(b) {
			t.Fatalf("%q → invalid JSON %s", s, b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		// Each bad byte becomes U+FFFD, as with encoding/json.
		if want := string([]rune(s)); back != want {
			t.Fatalf("%q → %s → %q", s, b, back)
		}
	}
}

func TestChatEncodeError(t *testing.T) {
	tests := []struct {
		status int
		kind   string
		want   string
	}{
		{400, "", `{"error":{"message":"m","type":"invalid_request_error","code":null,"param":null}}`},
		{401, "", `{"error":{"message":"m","type":"authentication_error","code":null,"param":null}}`},
		{403, "", `{"error":{"message":"m","type":"permission_error","code":null,"param":null}}`},
		{404, "", `{"error":{"message":"m","type":"not_found_error","code":null,"param":null}}`},
		{429, "", `{"error":{"message":"m","type":"rate_limit_error","code":null,"param":null}}`},
		{502, "", `{"error":{"message":"m","type":"server_error","code":null,"param":null}}`},
		{504, "upstream_timeout", `{"error":{"message":"m","type":"upstream_timeout","code":"upstream_timeout","param":null}}`},
	}
	for _, tt := range tests {
		body := OpenAIChat.EncodeError(tt.status, tt.kind, "m")
		chatSameJSON(t, body, tt.want)
		if got := OpenAIChat.ErrorMessage(body); got != "m" {
			t.Errorf("ErrorMessage of our own error: %q", got)
		}
	}
}

func TestChatErrorMessage(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{string(chatFixture(t, "error_openai.json")), "Incorrect API key provided: sk-abc***wxyz. You can find your API key at https://platform.openai.com/account/api-keys."},
		{string(chatFixture(t, "error_gemini_array.json")), "Resource exhausted. Please try again later."},
		{`{"message":"bare"}`, "bare"},
		{`{"error":"plain string"}`, "plain string"},
		{`{"error":{"code":402,"message":"Insufficient credits","metadata":{}}}`, "Insufficient credits"},
		{`{"choices":[]}`, ""},
		{`[]`, ""},
		{`<html>502 Bad Gateway</html>`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		if got := OpenAIChat.ErrorMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestChatProtocol(t *testing.T) {
	if OpenAIChat.Protocol() != ChatCompletions || OpenAIChat.StreamContentType() != "text/event-stream" {
		t.Fatal("wrong protocol or content type")
	}
}

package protocols

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
)

func respTRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// respTCompact makes raw JSON comparable whatever its spacing.
func respTCompact(t *testing.T, raw json.RawMessage) json.RawMessage {
	t.Helper()
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %s: %v", raw, err)
	}
	return b.Bytes()
}

func respTNormalize(t *testing.T, r *Request) {
	for i := range r.Tools {
		r.Tools[i].Parameters = respTCompact(t, r.Tools[i].Parameters)
	}
	if r.Format != nil {
		r.Format.Schema = respTCompact(t, r.Format.Schema)
	}
}

func respTPtr[T any](v T) *T { return &v }

func TestResponsesDecodeRequestFull(t *testing.T) {
	got, err := OpenAIResponses.DecodeRequest(respTRead(t, "responses/request_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	respTNormalize(t, got)
	want := &Request{
		Model: "gpt-5",
		Messages: []Message{
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "You are terse."}}},
			{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "Answer in English."}}},
			{Role: RoleUser, Parts: []Part{
				{Kind: PartText, Text: "What is in these images?"},
				{Kind: PartImage, URL: "https://example.com/cat.png"},
				{Kind: PartImage, MediaType: "image/png", Data: "iVBORw0KGgo="},
			}},
			{Role: RoleAssistant,
				Parts: []Part{
					{Kind: PartThinking, Text: "Looking at the images.", Signature: "sig-1"},
					{Kind: PartText, Text: "A cat and a logo."},
				},
				ToolCalls: []ToolCall{
					{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
					{ID: "call_b", Name: "get_time", Arguments: `{"tz":"CET"}`},
				}},
			{Role: RoleTool, ToolCallID: "call_a", Parts: []Part{{Kind: PartText, Text: "18C, sunny"}}},
			{Role: RoleTool, ToolCallID: "call_b", Parts: []Part{{Kind: PartText, Text: "12:00"}}},
			{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: "Thanks. Summarise."}}},
		},
		MaxTokens:   512,
		Temperature: respTPtr(0.2),
		TopP:        respTPtr(0.9),
		Stream:      true,
		Tools: []Tool{
			{Name: "get_weather", Description: "Weather for a city",
				Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`)},
			{Name: "get_time", Parameters: json.RawMessage(`{"type":"object","properties":{"tz":{"type":"string"}}}`)},
		},
		ToolChoice:        &ToolChoice{Mode: ToolNamed, Name: "get_weather"},
		ParallelToolCalls: respTPtr(false),
		Format: &Format{Kind: FormatJSONSchema, Name: "summary", Strict: true,
			Schema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}`)},
		Reasoning: &Reasoning{Effort: "medium"},
		User:      "user-42",
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("got\n%s\nwant\n%s", g, w)
	}
}

func TestResponsesDecodeRequestMappings(t *testing.T) {
	user := func(s string) Message { return Message{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: s}}} }
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, r *Request)
	}{
		{"string input", `{"model":"m","input":"hi"}`, func(t *testing.T, r *Request) {
			if !reflect.DeepEqual(r.Messages, []Message{user("hi")}) || r.Model != "m" || r.Stream {
				t.Fatalf("%+v", r)
			}
		}},
		{"instructions come first", `{"input":[{"role":"user","content":"q"}],"instructions":"be kind"}`, func(t *testing.T, r *Request) {
			want := []Message{{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: "be kind"}}}, user("q")}
			if !reflect.DeepEqual(r.Messages, want) {
				t.Fatalf("%+v", r.Messages)
			}
		}},
		{"system and developer roles", `{"input":[{"type":"message","role":"system","content":[{"type":"input_text","text":"a"}]},{"role":"developer","content":"b"},{"role":"user","content":"c"}]}`, func(t *testing.T, r *Request) {
			if r.Messages[0].Role != RoleSystem || r.Messages[1].Role != RoleSystem || r.Messages[1].Parts[0].Text != "b" {
				t.Fatalf("%+v", r.Messages)
			}
		}},
		{"function calls without a message start an assistant turn", `{"input":[{"role":"user","content":"q"},
			{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
			{"type":"function_call","call_id":"c2","name":"g","arguments":"{\"a\":1}"},
			{"type":"function_call_output","call_id":"c1","output":"one"},
			{"type":"function_call_output","call_id":"c2","output":"two"},
			{"type":"function_call","call_id":"c3","name":"f","arguments":"{}"},
			{"type":"function_call_output","call_id":"c3","output":""}]}`, func(t *testing.T, r *Request) {
			if len(r.Messages) != 6 {
				t.Fatalf("%d messages: %+v", len(r.Messages), r.Messages)
			}
			a := r.Messages[1]
			if a.Role != RoleAssistant || len(a.ToolCalls) != 2 || a.ToolCalls[1].Arguments != `{"a":1}` || len(a.Parts) != 0 {
				t.Fatalf("%+v", a)
			}
			if r.Messages[4].Role != RoleAssistant || r.Messages[4].ToolCalls[0].ID != "c3" {
				t.Fatalf("%+v", r.Messages[4])
			}
			if m := r.Messages[5]; m.Role != RoleTool || m.ToolCallID != "c3" || len(m.Parts) != 1 {
				t.Fatalf("%+v", m)
			}
		}},
		{"text after calls is a new assistant turn", `{"input":[{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"role":"assistant","content":"done"}]}`, func(t *testing.T, r *Request) {
			if len(r.Messages) != 2 || r.Messages[1].Parts[0].Text != "done" {
				t.Fatalf("%+v", r.Messages)
			}
		}},
		{"reasoning without signature or text is dropped", `{"input":[{"role":"user","content":"q"},{"type":"reasoning","id":"rs","summary":[]},{"role":"assistant","content":[{"type":"output_text","text":"a"},{"type":"refusal","refusal":"no"}]}]}`, func(t *testing.T, r *Request) {
			a := r.Messages[1]
			if len(a.Parts) != 2 || a.Parts[0].Kind != PartText || a.Parts[1].Text != "no" {
				t.Fatalf("%+v", a)
			}
		}},
		{"tool output as parts with an image", `{"input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"see"},{"type":"input_image","image_url":"data:image/jpeg;base64,/9j/"}]}]}`, func(t *testing.T, r *Request) {
			m := r.Messages[0]
			if m.Role != RoleTool || m.Parts[1].MediaType != "image/jpeg" || m.Parts[1].Data != "/9j/" {
				t.Fatalf("%+v", m)
			}
		}},
		{"tool_choice auto", `{"input":"q","tool_choice":"auto"}`, func(t *testing.T, r *Request) {
			if *r.ToolChoice != (ToolChoice{Mode: ToolAuto}) {
				t.Fatal(r.ToolChoice)
			}
		}},
		{"tool_choice none", `{"input":"q","tool_choice":"none"}`, func(t *testing.T, r *Request) {
			if *r.ToolChoice != (ToolChoice{Mode: ToolNone}) {
				t.Fatal(r.ToolChoice)
			}
		}},
		{"tool_choice required", `{"input":"q","tool_choice":"required"}`, func(t *testing.T, r *Request) {
			if *r.ToolChoice != (ToolChoice{Mode: ToolRequired}) {
				t.Fatal(r.ToolChoice)
			}
		}},
		{"allowed_tools narrows the tools", `{"input":"q","tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}],
			"tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"b"}]}}`, func(t *testing.T, r *Request) {
			if *r.ToolChoice != (ToolChoice{Mode: ToolRequired}) || len(r.Tools) != 1 || r.Tools[0].Name != "b" || r.Tools[0].Parameters != nil {
				t.Fatalf("%+v %+v", r.ToolChoice, r.Tools)
			}
		}},
		{"json_object", `{"input":"q","text":{"format":{"type":"json_object"}}}`, func(t *testing.T, r *Request) {
			if r.Format == nil || r.Format.Kind != FormatJSON {
				t.Fatal(r.Format)
			}
		}},
		{"text format", `{"input":"q","text":{"format":{"type":"text"},"verbosity":"low"}}`, func(t *testing.T, r *Request) {
			if r.Format != nil {
				t.Fatal(r.Format)
			}
		}},
		{"effort none asks for nothing", `{"input":"q","reasoning":{"effort":"none"}}`, func(t *testing.T, r *Request) {
			if r.Reasoning != nil {
				t.Fatal(r.Reasoning)
			}
		}},
		{"effort xhigh is the hub's high", `{"input":"q","reasoning":{"effort":"xhigh"}}`, func(t *testing.T, r *Request) {
			if r.Reasoning == nil || r.Reasoning.Effort != "high" {
				t.Fatal(r.Reasoning)
			}
		}},
		{"safety_identifier stands for user", `{"input":"q","safety_identifier":"h1","stream":false,"previous_response_id":null,"background":false,"conversation":null}`, func(t *testing.T, r *Request) {
			if r.User != "h1" {
				t.Fatal(r.User)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := OpenAIResponses.DecodeRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestResponsesDecodeRequestRefusals(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"bad JSON", `{"input":`, "not valid JSON"},
		{"not an object", `["hi"]`, "JSON object"},
		{"a string", `"hi"`, "JSON object"},
		{"empty", ``, "empty"},
		{"missing input", `{"model":"m"}`, "input"},
		{"null input", `{"input":null}`, "input"},
		{"empty input", `{"input":[]}`, "input"},
		{"number input", `{"input":3}`, "input"},
		{"previous_response_id", string(respTRead(t, "responses/request_previous.json")), "previous_response_id"},
		{"conversation", `{"input":"q","conversation":"conv_123"}`, "conversation"},
		{"background", `{"input":"q","background":true}`, "background"},
		{"stored prompt", `{"input":"q","prompt":{"id":"pmpt_1"}}`, "prompt"},
		{"web search", string(respTRead(t, "responses/request_web_search.json")), "web_search_preview"},
		{"hosted tool choice", `{"input":"q","tool_choice":{"type":"file_search"}}`, "file_search"},
		{"item reference", `{"input":[{"type":"item_reference","id":"msg_1"}]}`, "item_reference"},
		{"hosted item", `{"input":[{"type":"web_search_call","id":"ws_1","status":"completed"}]}`, "web_search_call"},
		{"file id image", `{"input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]}`, "file_id"},
		{"input_file", `{"input":[{"role":"user","content":[{"type":"input_file","file_data":"x"}]}]}`, "input[0].content[0]: input_file"},
		{"temperature type", `{"input":"q","temperature":"hot"}`, "temperature: expected a number"},
		{"arguments type", `{"input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]}`, "input[0].arguments: expected a string"},
		{"unknown role", `{"input":[{"role":"robot","content":"x"}]}`, "input[0].role"},
		{"bad effort", `{"input":"q","reasoning":{"effort":"max"}}`, "reasoning.effort"},
		{"bad tool_choice", `{"input":"q","tool_choice":"any"}`, "tool_choice"},
		{"schema missing", `{"input":"q","text":{"format":{"type":"json_schema","name":"x"}}}`, "text.format.schema"},
		{"nameless function", `{"input":"q","tools":[{"type":"function"}]}`, "tools[0].name"},
		{"non-base64 data URI", `{"input":[{"role":"user","content":[{"type":"input_image","image_url":"data:image/png,abc"}]}]}`, "base64"},
		{"item not an object", `{"input":["hi"]}`, "input[0]"},
		{"bad max tokens", `{"input":"q","max_output_tokens":0}`, "max_output_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenAIResponses.DecodeRequest([]byte(tt.body))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("want *Error, got %v", err)
			}
			if pe.Status != http.StatusBadRequest || !strings.Contains(pe.Msg, tt.want) {
				t.Fatalf("got %d %q, want 400 containing %q", pe.Status, pe.Msg, tt.want)
			}
		})
	}
}

func TestResponsesEncodeResponseSDK(t *testing.T) {
	in := &Response{
		ID: "chatcmpl-42", Model: "claude-sonnet-4-5", Created: 1700000000,
		Parts: []Part{
			{Kind: PartThinking, Text: "The user wants weather.", Signature: "sig=="},
			{Kind: PartText, Text: "Let me "},
			{Kind: PartText, Text: "check."},
		},
		ToolCalls: []ToolCall{
			{ID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{ID: "toolu_2", Name: "get_time"},
		},
		Finish:    FinishToolCalls,
		Usage:     Usage{Input: 100, Output: 40, CacheRead: 60, Reasoning: 12},
		UsageSeen: true,
	}
	body, err := OpenAIResponses.EncodeResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	var r responses.Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	for name, f := range map[string]interface{ Valid() bool }{
		"id": r.JSON.ID, "created_at": r.JSON.CreatedAt, "model": r.JSON.Model, "output": r.JSON.Output,
		"parallel_tool_calls": r.JSON.ParallelToolCalls, "temperature": r.JSON.Temperature,
		"tool_choice": r.JSON.ToolChoice, "tools": r.JSON.Tools, "top_p": r.JSON.TopP, "usage": r.JSON.Usage,
		"text": r.JSON.Text, "status": r.JSON.Status,
	} {
		if !f.Valid() {
			t.Errorf("field %s is not valid for the SDK", name)
		}
	}
	if r.ID != "resp_chatcmpl-42" || r.Object != "response" || r.Status != responses.ResponseStatusCompleted ||
		r.Model != "claude-sonnet-4-5" || int64(r.CreatedAt) != 1700000000 {
		t.Fatalf("envelope: %s", body)
	}
	if got := r.OutputText(); got != "Let me check." {
		t.Fatalf("output text %q", got)
	}
	if len(r.Output) != 4 {
		t.Fatalf("%d output items: %s", len(r.Output), body)
	}
	rs := r.Output[0].AsReasoning()
	if r.Output[0].Type != "reasoning" || !strings.HasPrefix(rs.ID, "rs_") || len(rs.Summary) != 1 ||
		rs.Summary[0].Text != "The user wants weather." || rs.EncryptedContent != "sig==" {
		t.Fatalf("reasoning item: %+v", rs)
	}
	msg := r.Output[1].AsMessage()
	if !strings.HasPrefix(msg.ID, "msg_") || msg.Status != "completed" || msg.Role != "assistant" || len(msg.Content) != 1 {
		t.Fatalf("message item: %s", r.Output[1].RawJSON())
	}
	for i, want := range []struct{ callID, name, args string }{
		{"toolu_1", "get_weather", `{"city":"Paris"}`},
		{"toolu_2", "get_time", `{}`},
	} {
		fc := r.Output[2+i].AsFunctionCall()
		if r.Output[2+i].Type != "function_call" || !strings.HasPrefix(fc.ID, "fc_") || fc.CallID != want.callID ||
			fc.Name != want.name || fc.Arguments != want.args || fc.Status != "completed" {
			t.Fatalf("function call %d: %+v", i, fc)
		}
	}
	u := r.Usage
	if u.InputTokens != 100 || u.OutputTokens != 40 || u.TotalTokens != 140 ||
		u.InputTokensDetails.CachedTokens != 60 || u.OutputTokensDetails.ReasoningTokens != 12 {
		t.Fatalf("usage: %+v", u)
	}

	// The reasoning item goes back as a thinking part with its signature.
	var raw struct {
		Output []json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	next, _ := json.Marshal(map[string]any{"input": append([]json.RawMessage{json.RawMessage(`{"role":"user","content":"q"}`)}, raw.Output...)})
	req, err := OpenAIResponses.DecodeRequest(next)
	if err != nil {
		t.Fatal(err)
	}
	a := req.Messages[1]
	if a.Parts[0] != (Part{Kind: PartThinking, Text: "The user wants weather.", Signature: "sig=="}) ||
		a.Parts[1].Text != "Let me check." || len(a.ToolCalls) != 2 || a.ToolCalls[0].ID != "toolu_1" {
		t.Fatalf("round trip: %+v", a)
	}
}

func TestResponsesEncodeResponseIncomplete(t *testing.T) {
	for _, tt := range []struct {
		finish Finish
		reason string
	}{{FinishLength, "max_output_tokens"}, {FinishContentFilter, "content_filter"}} {
		body, err := OpenAIResponses.EncodeResponse(&Response{Model: "m", Parts: []Part{{Kind: PartText, Text: "Once upon"}}, Finish: tt.finish})
		if err != nil {
			t.Fatal(err)
		}
		var r responses.Response
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != responses.ResponseStatusIncomplete || r.IncompleteDetails.Reason != tt.reason ||
			r.Output[0].AsMessage().Status != "incomplete" || !strings.HasPrefix(r.ID, "resp_") {
			t.Fatalf("%s", body)
		}
		if r.JSON.Usage.Raw() != "null" {
			t.Fatalf("usage not seen must be null: %s", body)
		}
	}
}

func TestResponsesEncodeResponseEmpty(t *testing.T) {
	body, err := OpenAIResponses.EncodeResponse(&Response{Finish: FinishStop})
	if err != nil {
		t.Fatal(err)
	}
	var r responses.Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Output) != 1 || r.Output[0].Type != "message" || r.OutputText() != "" {
		t.Fatalf("%s", body)
	}
}

// respTEvent is one SSE event as a client's parser sees it.
type respTEvent struct {
	name string
	data []byte
}

func respTEvents(t *testing.T, stream []byte) []respTEvent {
	t.Helper()
	var out []respTEvent
	for _, block := range strings.Split(string(stream), "\n\n") {
		if block == "" {
			continue
		}
		lines := strings.Split(block, "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("malformed event %q", block)
		}
		out = append(out, respTEvent{strings.TrimPrefix(lines[0], "event: "), []byte(strings.TrimPrefix(lines[1], "data: "))})
	}
	return out
}

// respTSDKStream reads stream the way openai-go reads a Responses stream.
func respTSDKStream(t *testing.T, stream []byte) []responses.ResponseStreamEventUnion {
	t.Helper()
	res := &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {OpenAIResponses.StreamContentType()}},
		Body:       io.NopCloser(bytes.NewReader(stream)),
	}
	s := ssestream.NewStream[responses.ResponseStreamEventUnion](ssestream.NewDecoder(res), nil)
	var evs []responses.ResponseStreamEventUnion
	for s.Next() {
		evs = append(evs, s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatalf("SDK stream: %v", err)
	}
	return evs
}

func TestResponsesStreamSDK(t *testing.T) {
	temp := 0.5
	req := &Request{Model: "gpt-x", Temperature: &temp, MaxTokens: 300,
		Tools:      []Tool{{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object"}`)}},
		ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "get_weather"}}
	enc := OpenAIResponses.NewEncoder(req)
	var out []byte
	for _, d := range []Delta{
		{ID: "msg_up", Model: "claude-x"},
		{Thinking: "Weather "},
		{Thinking: "needed."},
		{Signature: "sig-9"},
		{Text: "Checking "},
		{Text: "now."},
		{Tool: &ToolDelta{Index: 0, ID: "toolu_a", Name: "get_weather"}},
		{Tool: &ToolDelta{Index: 0, Arguments: `{"city":`}},
		{Tool: &ToolDelta{Index: 1, ID: "toolu_b", Name: "get_weather", Arguments: `{"city":"Rome"}`}},
		{Tool: &ToolDelta{Index: 0, Arguments: `"Paris"}`}},
		{Finish: FinishToolCalls},
		{Usage: &Usage{Input: 20, Output: 5}},
		{Usage: &Usage{Input: 20, Output: 30, CacheRead: 8, Reasoning: 10}},
	} {
		out = enc.Delta(out, &d)
	}
	out = enc.End(out)

	raw := respTEvents(t, out)
	evs := respTSDKStream(t, out)
	if len(evs) != len(raw) {
		t.Fatalf("SDK read %d events, the stream has %d", len(evs), len(raw))
	}
	var types []string
	text, args := "", map[string]string{}
	itemAt := map[int64]string{}
	for i, ev := range evs {
		if ev.Type != raw[i].name {
			t.Fatalf("event %d: name %q, type %q", i, raw[i].name, ev.Type)
		}
		if ev.SequenceNumber != int64(i) {
			t.Fatalf("event %d has sequence_number %d", i, ev.SequenceNumber)
		}
		types = append(types, ev.Type)
		switch v := ev.AsAny().(type) {
		case responses.ResponseOutputItemAddedEvent:
			if _, dup := itemAt[v.OutputIndex]; dup {
				t.Fatalf("output index %d added twice", v.OutputIndex)
			}
			itemAt[v.OutputIndex] = v.Item.ID
		case responses.ResponseOutputItemDoneEvent:
			if itemAt[v.OutputIndex] != v.Item.ID {
				t.Fatalf("done item %q at %d, added %q", v.Item.ID, v.OutputIndex, itemAt[v.OutputIndex])
			}
		case responses.ResponseTextDeltaEvent:
			if itemAt[v.OutputIndex] != v.ItemID {
				t.Fatalf("text delta for %q at %d", v.ItemID, v.OutputIndex)
			}
			text += v.Delta
		case responses.ResponseTextDoneEvent:
			if v.Text != text {
				t.Fatalf("text done %q, deltas %q", v.Text, text)
			}
		case responses.ResponseFunctionCallArgumentsDeltaEvent:
			if itemAt[v.OutputIndex] != v.ItemID {
				t.Fatalf("arguments delta for %q at %d", v.ItemID, v.OutputIndex)
			}
			args[v.ItemID] += v.Delta
		case responses.ResponseFunctionCallArgumentsDoneEvent:
			if args[v.ItemID] != v.Arguments {
				t.Fatalf("arguments done %q, deltas %q", v.Arguments, args[v.ItemID])
			}
		case responses.ResponseReasoningSummaryTextDoneEvent:
			if v.Text != "Weather needed." {
				t.Fatalf("summary %q", v.Text)
			}
		case responses.ResponseCreatedEvent:
			if v.Response.Status != "in_progress" || v.Response.Model != "claude-x" || v.Response.ID != "resp_msg_up" ||
				v.Response.Temperature != 0.5 || v.Response.MaxOutputTokens != 300 || v.Response.ToolChoice.Name != "get_weather" ||
				len(v.Response.Tools) != 1 {
				t.Fatalf("created: %s", raw[i].data)
			}
		}
	}
	wantTypes := []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.reasoning_summary_part.added",
		"response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
		"response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
		"response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done",
		"response.output_item.added", "response.function_call_arguments.delta",
		"response.output_item.added", "response.function_call_arguments.delta",
		"response.function_call_arguments.delta",
		"response.function_call_arguments.done", "response.output_item.done",
		"response.function_call_arguments.done", "response.output_item.done",
		"response.completed",
	}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(types, "\n"), strings.Join(wantTypes, "\n"))
	}
	if text != "Checking now." {
		t.Fatalf("text %q", text)
	}

	final := evs[len(evs)-1].AsResponseCompleted().Response
	if final.Status != responses.ResponseStatusCompleted || final.ID != "resp_msg_up" || len(final.Output) != 4 {
		t.Fatalf("final: %s", raw[len(raw)-1].data)
	}
	for i, it := range final.Output {
		if it.ID != itemAt[int64(i)] {
			t.Fatalf("final output %d is %q, streamed %q", i, it.ID, itemAt[int64(i)])
		}
	}
	if rs := final.Output[0].AsReasoning(); rs.EncryptedContent != "sig-9" || rs.Summary[0].Text != "Weather needed." {
		t.Fatalf("reasoning: %s", final.Output[0].RawJSON())
	}
	if final.OutputText() != "Checking now." {
		t.Fatalf("final text %q", final.OutputText())
	}
	fc0, fc1 := final.Output[2].AsFunctionCall(), final.Output[3].AsFunctionCall()
	if fc0.CallID != "toolu_a" || fc0.Arguments != `{"city":"Paris"}` || fc0.Status != "completed" ||
		fc1.CallID != "toolu_b" || fc1.Arguments != `{"city":"Rome"}` {
		t.Fatalf("calls: %+v %+v", fc0, fc1)
	}
	if u := final.Usage; u.InputTokens != 20 || u.OutputTokens != 30 || u.TotalTokens != 50 ||
		u.InputTokensDetails.CachedTokens != 8 || u.OutputTokensDetails.ReasoningTokens != 10 {
		t.Fatalf("usage: %+v", u)
	}
	if bytes.Contains(out, []byte("[DONE]")) {
		t.Fatal("a Responses stream has no [DONE]")
	}
}

func TestResponsesStreamIncompleteAndEmpty(t *testing.T) {
	enc := OpenAIResponses.NewEncoder(&Request{Model: "m"})
	out := enc.Delta(nil, &Delta{Text: "Once"})
	out = enc.Delta(out, &Delta{Finish: FinishLength})
	out = enc.End(out)
	evs := respTSDKStream(t, out)
	last := evs[len(evs)-1]
	if last.Type != "response.incomplete" {
		t.Fatalf("last event %q", last.Type)
	}
	inc := last.AsResponseIncomplete().Response
	if inc.IncompleteDetails.Reason != "max_output_tokens" || inc.Output[0].AsMessage().Status != "incomplete" || inc.Model != "m" {
		t.Fatalf("%s", inc.RawJSON())
	}
	if again := enc.End(nil); len(again) != 0 {
		t.Fatalf("a second End wrote %q", again)
	}

	out = OpenAIResponses.NewEncoder(nil).End(nil)
	evs = respTSDKStream(t, out)
	if len(evs) != 3 || evs[0].Type != "response.created" || evs[2].Type != "response.completed" {
		t.Fatalf("%s", out)
	}
}

func TestResponsesEncodeError(t *testing.T) {
	for _, tt := range []struct {
		status    int
		kind      string
		typ, code string
	}{
		{400, "invalid_request", "invalid_request_error", "invalid_request"},
		{401, "", "authentication_error", "authentication_error"},
		{403, "forbidden", "permission_error", "forbidden"},
		{404, "", "not_found_error", "not_found_error"},
		{429, "rate_limited", "rate_limit_error", "rate_limited"},
		{502, "upstream_error", "server_error", "upstream_error"},
		{503, "", "server_error", "server_error"},
		{413, "", "invalid_request_error", "invalid_request_error"},
	} {
		body := OpenAIResponses.EncodeError(tt.status, tt.kind, "it broke")
		var e map[string]map[string]any
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		got := e["error"]
		if got["message"] != "it broke" || got["type"] != tt.typ || got["code"] != tt.code {
			t.Errorf("%d %q: %s", tt.status, tt.kind, body)
		}
		if v, ok := got["param"]; !ok || v != nil {
			t.Errorf("param must be null: %s", body)
		}
	}
}

// Text with blank lines must not break the SSE framing.
func TestResponsesStreamFraming(t *testing.T) {
	enc := OpenAIResponses.NewEncoder(&Request{})
	out := enc.Delta(nil, &Delta{Text: "a\n\nb"})
	out = enc.End(out)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
			t.Fatalf("stray line %q", line)
		}
	}
	if evs := respTSDKStream(t, out); evs[len(evs)-1].AsResponseCompleted().Response.OutputText() != "a\n\nb" {
		t.Fatal("text with blank lines did not survive")
	}
}

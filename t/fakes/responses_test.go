package fakes

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"
)

const respKey = "sk-resp-test"

var respHeaders = map[string]string{"Authorization": "Bearer " + respKey}

func startResponses(t *testing.T, opts ProviderOptions) *Provider {
	t.Helper()
	opts.Keys = map[string]string{"Authorization": "Bearer " + respKey}
	if opts.ModelAlias == nil {
		opts.ModelAlias = map[string]string{"gpt-4o": "gpt-4o-2024-08-06"}
	}
	p := StartProvider(opts)
	t.Cleanup(p.Close)
	return p
}

func respClient(p *Provider) openai.Client {
	return openai.NewClient(option.WithBaseURL(p.URL+"/v1/"), option.WithAPIKey(respKey), option.WithMaxRetries(0))
}

// respNames are the events' names in order; each data carries its type and
// sequence numbers count from 0.
func respNames(t *testing.T, body []byte) ([]string, []namedEvent) {
	t.Helper()
	if strings.Contains(string(body), "[DONE]") {
		t.Fatalf("a Responses stream has no [DONE]: %s", body)
	}
	evs := anthropicEvents(t, body) // "event: <type>\ndata: <json>\n\n" frames
	names := make([]string, len(evs))
	for i, e := range evs {
		names[i] = e.name
		if n := gjson.Get(e.data, "sequence_number"); n.Type != gjson.Number || n.Int() != int64(i) {
			t.Fatalf("event %d has sequence_number %s: %s", i, n.Raw, e.data)
		}
	}
	return names, evs
}

func TestResponsesWhole(t *testing.T) {
	p := startResponses(t, ProviderOptions{})
	body := `{"model":"gpt-4o","instructions":"Be brief.","input":"What is 1+1?","max_output_tokens":64}`
	resp, b := postTo(t, p.URL+"/v1/responses", respHeaders, body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	r := gjson.ParseBytes(b)
	for path, want := range map[string]any{
		"object": "response", "status": "completed", "model": "gpt-4o-2024-08-06", "instructions": "Be brief.",
		"max_output_tokens": 64.0, "output.#": 1.0, "output.0.type": "message", "output.0.role": "assistant",
		"output.0.status": "completed", "output.0.content.0.type": "output_text", "output.0.content.0.text": "1+1 equals 2.",
		"output.0.content.0.annotations.#": 0.0, "usage.input_tokens": 5.0, "usage.input_tokens_details.cached_tokens": 0.0,
		"usage.output_tokens": 3.0, "usage.output_tokens_details.reasoning_tokens": 0.0, "usage.total_tokens": 8.0,
		"tool_choice": "auto", "tools.#": 0.0, "parallel_tool_calls": true, "text.format.type": "text",
		"temperature": 1.0, "top_p": 1.0, "error": nil, "incomplete_details": nil,
	} {
		if got := r.Get(path).Value(); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if !strings.HasPrefix(r.Get("id").Str, "resp_") || !strings.HasPrefix(r.Get("output.0.id").Str, "msg_") || r.Get("created_at").Int() == 0 {
		t.Errorf("ids/created_at: %s", b)
	}

	// openai-go reads the same answer, every required field present.
	client := respClient(p)
	sdk, err := client.Responses.New(context.Background(), responses.ResponseNewParams{
		Model:        "gpt-4o",
		Instructions: openai.String("Be brief."),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("You are a calculator.", responses.EasyInputMessageRoleDeveloper),
			responses.ResponseInputItemParamOfMessage(responses.ResponseInputMessageContentListParam{
				responses.ResponseInputContentParamOfInputText("What is 1+1?"),
				{OfInputImage: &responses.ResponseInputImageParam{ImageURL: openai.String("https://example.com/sum.png"), Detail: responses.ResponseInputImageDetailAuto}},
			}, responses.EasyInputMessageRoleUser),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sdk.OutputText() != "1+1 equals 2." || sdk.Status != responses.ResponseStatusCompleted || sdk.Model != "gpt-4o-2024-08-06" ||
		sdk.Usage.InputTokens != 9 || sdk.Usage.OutputTokens != 3 || sdk.Usage.TotalTokens != 12 || !strings.HasPrefix(sdk.ID, "resp_") {
		t.Fatalf("sdk read %+v usage %+v", sdk.OutputText(), sdk.Usage)
	}
	j := sdk.JSON
	for name, f := range map[string]interface{ Valid() bool }{
		"id": j.ID, "created_at": j.CreatedAt, "instructions": j.Instructions, "metadata": j.Metadata, "model": j.Model,
		"object": j.Object, "output": j.Output, "parallel_tool_calls": j.ParallelToolCalls, "temperature": j.Temperature,
		"tool_choice": j.ToolChoice, "tools": j.Tools, "top_p": j.TopP, "status": j.Status, "text": j.Text,
		"usage": j.Usage, "reasoning": j.Reasoning, "access_programs": j.AccessPrograms, "completed_at": j.CompletedAt,
	} {
		if !f.Valid() {
			t.Errorf("sdk: %s missing or invalid", name)
		}
	}
	msg := sdk.Output[0].AsMessage()
	if msg.Type != "message" || !msg.JSON.ID.Valid() || msg.Content[0].AsOutputText().Text != "1+1 equals 2." || !msg.Content[0].JSON.Annotations.Valid() {
		t.Fatalf("sdk message %s", sdk.Output[0].RawJSON())
	}
	last, _ := p.Last()
	if last.Path != "/v1/responses" || last.Header.Get("Authorization") != "Bearer "+respKey {
		t.Fatalf("recorded %s %v", last.Path, last.Header)
	}

	// A custom Reply, cut by max_output_tokens: an incomplete response.
	long := strings.Repeat("word ", 20)
	q := startResponses(t, ProviderOptions{Reply: long})
	_, b = postTo(t, q.URL+"/v1/responses", respHeaders, `{"model":"gpt-4o","input":"Talk.","max_output_tokens":16}`)
	r = gjson.ParseBytes(b)
	if r.Get("status").Str != "incomplete" || r.Get("incomplete_details.reason").Str != "max_output_tokens" ||
		r.Get("usage.output_tokens").Int() != 16 || words(r.Get("output.0.content.0.text").Str) != 16 {
		t.Fatalf("truncated: %s", b)
	}
}

func TestResponsesStream(t *testing.T) {
	p := startResponses(t, ProviderOptions{})
	resp, b := postTo(t, p.URL+"/v1/responses", respHeaders, `{"model":"gpt-4o","instructions":"Be brief.","input":"What is 1+1?","stream":true}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	names, evs := respNames(t, b)
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v", names)
	}
	var text strings.Builder
	for _, e := range evs[4:7] {
		text.WriteString(gjson.Get(e.data, "delta").Str)
	}
	first, done := gjson.Get(evs[0].data, "response"), gjson.Get(evs[10].data, "response")
	if text.String() != "1+1 equals 2." || gjson.Get(evs[7].data, "text").Str != text.String() ||
		first.Get("status").Str != "in_progress" || first.Get("usage").Type != gjson.Null ||
		done.Get("status").Str != "completed" || done.Get("usage.input_tokens").Int() != 5 ||
		done.Get("usage.output_tokens").Int() != 3 || done.Get("output.0.content.0.text").Str != "1+1 equals 2." ||
		done.Get("id").Str != first.Get("id").Str {
		t.Fatalf("stream %s", b)
	}

	// openai-go reads the same stream.
	client := respClient(p)
	stream := client.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("What is 1+1?")},
	})
	var got []string
	text.Reset()
	var final responses.Response
	for stream.Next() {
		ev := stream.Current()
		got = append(got, ev.Type)
		switch e := ev.AsAny().(type) {
		case responses.ResponseTextDeltaEvent:
			text.WriteString(e.Delta)
		case responses.ResponseCompletedEvent:
			final = e.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") || text.String() != "1+1 equals 2." ||
		final.OutputText() != "1+1 equals 2." || final.Usage.InputTokens != 3 || final.Usage.TotalTokens != 6 {
		t.Fatalf("sdk stream %v %q %+v", got, text.String(), final.Usage)
	}
}

const respWeatherTools = `"tools":[{"type":"function","name":"get_weather","description":"Current weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},{"type":"function","name":"get_time","parameters":{"type":"object","properties":{}}}]`

func TestResponsesToolCall(t *testing.T) {
	p := startResponses(t, ProviderOptions{})
	ask := `{"model":"gpt-4o","input":[{"role":"user","content":"What is the weather in Paris?"}],` + respWeatherTools
	_, b := postTo(t, p.URL+"/v1/responses", respHeaders, ask+`}`)
	call := gjson.GetBytes(b, "output.0")
	if call.Get("type").Str != "function_call" || call.Get("name").Str != "get_weather" || call.Get("arguments").Str != `{"city":"Paris"}` ||
		!strings.HasPrefix(call.Get("call_id").Str, "call_") || !strings.HasPrefix(call.Get("id").Str, "fc_") ||
		call.Get("status").Str != "completed" || gjson.GetBytes(b, "tools.1.strict").Type != gjson.True {
		t.Fatalf("call: %s", b)
	}

	// Streamed: the item, the arguments in fragments, their whole.
	_, b = postTo(t, p.URL+"/v1/responses", respHeaders, ask+`,"stream":true}`)
	names, evs := respNames(t, b)
	var args strings.Builder
	deltas := 0
	for _, e := range evs {
		if e.name == "response.function_call_arguments.delta" {
			deltas++
			args.WriteString(gjson.Get(e.data, "delta").Str)
		}
	}
	added := gjson.Get(evs[2].data, "item")
	if deltas < 2 || args.String() != `{"city":"Paris"}` || added.Get("type").Str != "function_call" || added.Get("arguments").Str != "" ||
		names[len(names)-3] != "response.function_call_arguments.done" || gjson.Get(evs[len(evs)-3].data, "arguments").Str != args.String() ||
		names[len(names)-2] != "response.output_item.done" || names[len(names)-1] != "response.completed" ||
		gjson.Get(evs[len(evs)-1].data, "response.output.0.call_id").Str != added.Get("call_id").Str {
		t.Fatalf("tool stream %v\n%s", names, b)
	}

	// openai-go: the call, then the tool's output answered with text.
	client := respClient(p)
	params := responses.ResponseNewParams{
		Model: "gpt-4o",
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("What is the weather in Paris?", responses.EasyInputMessageRoleUser),
		}},
		Tools: []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather",
			map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}, true)},
	}
	sdk, err := client.Responses.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	fc := sdk.Output[0].AsFunctionCall()
	if sdk.Output[0].Type != "function_call" || fc.Name != "get_weather" || fc.Arguments != `{"city":"Paris"}` || fc.CallID == "" {
		t.Fatalf("sdk call %s", sdk.RawJSON())
	}
	params.Input.OfInputItemList = append(params.Input.OfInputItemList,
		responses.ResponseInputItemParamOfFunctionCall(fc.Arguments, fc.CallID, fc.Name),
		responses.ResponseInputItemUnionParam{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{
			CallID: openai.String(fc.CallID), Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: openai.String("Sunny, 21 C")}}})
	sdk, err = client.Responses.New(context.Background(), params)
	if err != nil || sdk.OutputText() != "1+1 equals 2." || sdk.Usage.InputTokens != 9 {
		t.Fatalf("after the tool: %v %s", err, sdk.RawJSON())
	}

	stream := client.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Weather?")}, Tools: params.Tools,
	})
	args.Reset()
	var doneArgs string
	for stream.Next() {
		switch e := stream.Current().AsAny().(type) {
		case responses.ResponseFunctionCallArgumentsDeltaEvent:
			args.WriteString(e.Delta)
		case responses.ResponseFunctionCallArgumentsDoneEvent:
			doneArgs = e.Arguments
		}
	}
	if stream.Err() != nil || args.String() != `{"city":"Paris"}` || doneArgs != args.String() {
		t.Fatalf("sdk tool stream %v %q %q", stream.Err(), args.String(), doneArgs)
	}

	// tool_choice forces a call without the word; "none" forbids it.
	_, b = postTo(t, p.URL+"/v1/responses", respHeaders, `{"model":"gpt-4o","input":"Hi",`+respWeatherTools+`,"tool_choice":{"type":"function","name":"get_time"}}`)
	if gjson.GetBytes(b, "output.0.name").Str != "get_time" {
		t.Fatalf("forced: %s", b)
	}
	_, b = postTo(t, p.URL+"/v1/responses", respHeaders, ask+`,"tool_choice":"none"}`)
	if gjson.GetBytes(b, "output.0.type").Str != "message" {
		t.Fatalf("none: %s", b)
	}
}

func TestResponsesInvalid(t *testing.T) {
	p := startResponses(t, ProviderOptions{})
	cases := []struct{ name, body, param, code, msg string }{
		{"not json", `{"model":`, "", "", "We could not parse the JSON body"},
		{"no model", `{"input":"Hi"}`, "model", "missing_required_parameter", "Missing required parameter: 'model'."},
		{"no input", `{"model":"gpt-4o"}`, "input", "missing_required_parameter", "Missing required parameter: 'input'."},
		{"input object", `{"model":"gpt-4o","input":{"role":"user"}}`, "input", "invalid_type", "but got an object instead"},
		{"empty input", `{"model":"gpt-4o","input":[]}`, "input", "empty_array", "empty array"},
		{"bad role", `{"model":"gpt-4o","input":[{"role":"bot","content":"Hi"}]}`, "input[0].role", "invalid_value", "Invalid value: 'bot'."},
		{"no content", `{"model":"gpt-4o","input":[{"role":"user"}]}`, "input[0].content", "missing_required_parameter", ""},
		{"bad part", `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`, "input[0].content[0].type", "invalid_value", "'input_text', 'input_image', and 'input_file'"},
		{"user output_text", `{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"output_text","text":"Hi"}]}]}`, "input[0].content[0].type", "invalid_value", ""},
		{"assistant input_text", `{"model":"gpt-4o","input":[{"role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"input_text","text":"Hi"}]}]}`, "input[1].content[0].type", "invalid_value", "'output_text' and 'refusal'"},
		{"bad item", `{"model":"gpt-4o","input":[{"type":"bogus"}]}`, "input[0].type", "invalid_value", ""},
		{"call without id", `{"model":"gpt-4o","input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[0].call_id", "missing_required_parameter", ""},
		{"orphan output", `{"model":"gpt-4o","input":[{"type":"function_call_output","call_id":"call_1","output":"x"}]}`, "input", "", "No tool call found for function call output with call_id call_1."},
		{"tool without name", `{"model":"gpt-4o","input":"Hi","tools":[{"type":"function","parameters":{}}]}`, "tools[0].name", "missing_required_parameter", "Missing required parameter: 'tools[0].name'."},
		{"unknown choice", `{"model":"gpt-4o","input":"Hi","tool_choice":{"type":"function","name":"nope"}}`, "tool_choice", "", ""},
		{"unknown param", `{"model":"gpt-4o","input":"Hi","messages":[]}`, "messages", "unknown_parameter", "Unknown parameter: 'messages'."},
		{"small max", `{"model":"gpt-4o","input":"Hi","max_output_tokens":5}`, "max_output_tokens", "integer_below_min_value", ""},
		{"hot", `{"model":"gpt-4o","input":"Hi","temperature":3}`, "temperature", "decimal_above_max_value", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, b := postTo(t, p.URL+"/v1/responses", respHeaders, c.body)
			e := gjson.GetBytes(b, "error")
			if resp.StatusCode != 400 || e.Get("type").Str != "invalid_request_error" || !strings.Contains(e.Get("message").Str, c.msg) ||
				e.Get("param").Str != c.param || e.Get("code").Str != c.code || !e.Get("param").Exists() || !e.Get("code").Exists() {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
		})
	}

	// openai-go surfaces the 400 as an *openai.Error (it sends an unset tool
	// name as ""); a wrong key is a 401.
	client := respClient(p)
	_, err := client.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hi")},
		Tools: []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{Parameters: map[string]any{}}}},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tools[0].name" || apiErr.Code != "empty_string" {
		t.Fatalf("sdk error %v %s", err, apiErr.RawJSON())
	}
	bad := openai.NewClient(option.WithBaseURL(p.URL+"/v1/"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
	_, err = bad.Responses.New(context.Background(), responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hi")}})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("wrong key %v", err)
	}
}

// Scripted replies play as on every path, their events named by type.
func TestResponsesScripted(t *testing.T) {
	p := startResponses(t, ProviderOptions{})
	p.Script(
		Reply{Status: 429, Body: `{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`},
		Reply{Events: []string{
			`{"type":"response.output_text.delta","sequence_number":0,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}`,
			`{"type":"error","sequence_number":1,"code":"server_error","message":"boom","param":null}`,
		}},
	)
	resp, b := postTo(t, p.URL+"/v1/responses", respHeaders, `{"model":"gpt-4o","input":"Hi"}`)
	if resp.StatusCode != 429 || gjson.GetBytes(b, "error.code").Str != "rate_limit_exceeded" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_, b = postTo(t, p.URL+"/v1/responses", respHeaders, `{"model":"gpt-4o","input":"Hi","stream":true}`)
	if names, _ := respNames(t, b); strings.Join(names, " ") != "response.output_text.delta error" {
		t.Fatalf("scripted stream %s", b)
	}
	// Other openai paths keep their unnamed frames.
	p.Script(Reply{Events: []string{`{"id":"x","object":"chat.completion.chunk","choices":[]}`, "[DONE]"}})
	_, b = postTo(t, p.URL+"/v1/chat/completions", respHeaders, `{}`)
	if string(b) != "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\ndata: [DONE]\n\n" {
		t.Fatalf("chat frames %q", b)
	}
}

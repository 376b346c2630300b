package fakes

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// post sends body with headers and returns the answer read in full.
func postTo(t *testing.T, url string, headers map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

type namedEvent struct{ name, data string }

// anthropicEvents parses an Anthropic stream frame by frame: each frame is
// exactly "event: <name>\ndata: <json>" and the name is the payload's type.
func anthropicEvents(t *testing.T, body []byte) []namedEvent {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", s)
	}
	var out []namedEvent
	for _, frame := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		lines := strings.Split(frame, "\n")
		name, ok1 := strings.CutPrefix(lines[0], "event: ")
		data, ok2 := "", false
		if len(lines) == 2 {
			data, ok2 = strings.CutPrefix(lines[1], "data: ")
		}
		if !ok1 || !ok2 || !json.Valid([]byte(data)) || gjson.Get(data, "type").Str != name {
			t.Fatalf("bad frame %q", frame)
		}
		out = append(out, namedEvent{name, data})
	}
	return out
}

var antHeaders = map[string]string{"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}

func startAnthropic(t *testing.T) *Provider {
	p := StartProvider(ProviderOptions{Flavor: "anthropic", Keys: map[string]string{"x-api-key": "sk-ant-test"}})
	t.Cleanup(p.Close)
	return p
}

const weatherTool = `"tools":[{"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]`

func TestAnthropicMessage(t *testing.T) {
	p := startAnthropic(t)
	body := `{"model":"claude-sonnet-4-5","max_tokens":256,
		"system":[{"type":"text","text":"You are a terse calculator bot.","cache_control":{"type":"ephemeral"}}],
		"messages":[{"role":"user","content":"What is 1+1?"}]}`
	resp, b := postTo(t, p.URL+"/v1/messages", antHeaders, body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") ||
		resp.Header.Get("anthropic-ratelimit-requests-remaining") != "3999" ||
		resp.Header.Get("anthropic-ratelimit-requests-limit") != "4000" ||
		resp.Header.Get("anthropic-ratelimit-tokens-reset") == "" {
		t.Fatalf("headers %v", resp.Header)
	}
	var m struct {
		ID, Type, Role, Model string
		Content               []struct{ Type, Text string }
		StopReason            string  `json:"stop_reason"`
		StopSequence          *string `json:"stop_sequence"`
		Usage                 map[string]int
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" || m.Model != "claude-sonnet-4-5" ||
		len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text != "1+1 equals 2." ||
		m.StopReason != "end_turn" || m.StopSequence != nil || !gjson.GetBytes(b, "stop_sequence").Exists() {
		t.Fatalf("%s", b)
	}
	// The cached system prompt (6 words) is read from the cache, not input.
	want := map[string]int{"input_tokens": 3, "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 6}
	for k, v := range want {
		if got, ok := m.Usage[k]; !ok || got != v {
			t.Fatalf("usage %v, want %v", m.Usage, want)
		}
	}

	// An uncached system prompt counts as input.
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":256,
		"system":"You are a terse calculator bot.","messages":[{"role":"user","content":[{"type":"text","text":"What is 1+1?"}]}]}`)
	if u := gjson.GetBytes(b, "usage"); u.Get("input_tokens").Int() != 9 || u.Get("cache_read_input_tokens").Int() != 0 {
		t.Fatalf("%s", b)
	}

	reqs := p.Requests()
	if len(reqs) != 2 || reqs[0].Method != "POST" || reqs[0].Path != "/v1/messages" ||
		reqs[0].Header.Get("x-api-key") != "sk-ant-test" || reqs[0].Header.Get("anthropic-version") != "2023-06-01" ||
		gjson.GetBytes(reqs[0].Body, "system.0.cache_control.type").Str != "ephemeral" ||
		gjson.GetBytes(reqs[1].Body, "system").Str != "You are a terse calculator bot." {
		t.Fatalf("recorded %+v", reqs)
	}

	_, b = postTo(t, p.URL+"/v1/messages/count_tokens", antHeaders, `{"model":"claude-sonnet-4-5","system":"Be brief.","messages":[{"role":"user","content":"What is 1+1?"}]}`)
	if string(b) != `{"input_tokens":5}`+"\n" {
		t.Fatalf("count_tokens %s", b)
	}
}

func TestAnthropicRefusals(t *testing.T) {
	p := startAnthropic(t)
	const url = "/v1/messages"
	ok := `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`
	auth := []struct {
		name      string
		path      string
		headers   map[string]string
		status    int
		typ, want string
	}{
		{"no key", url, map[string]string{"anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"},
		{"wrong key", url, map[string]string{"x-api-key": "sk-ant-other", "anthropic-version": "2023-06-01"}, 401, "authentication_error", "invalid x-api-key"},
		{"bearer is not a key", url, map[string]string{"Authorization": "Bearer sk-ant-test", "anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"},
		{"no version", url, map[string]string{"x-api-key": "sk-ant-test"}, 400, "invalid_request_error", "anthropic-version: header is required"},
		{"bad version", url, map[string]string{"x-api-key": "sk-ant-test", "anthropic-version": "2024-13-01"}, 400, "invalid_request_error", "anthropic-version"},
		{"openai path", "/v1/chat/completions", antHeaders, 404, "not_found_error", "Not Found"},
	}
	for _, c := range auth {
		resp, b := postTo(t, p.URL+c.path, c.headers, ok)
		checkAnthropicError(t, c.name, resp, b, c.status, c.typ, c.want)
	}

	bodies := []struct{ name, body, want string }{
		{"not json", `{"model":`, "parsing the body"},
		{"no model", `{"max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`, "model: Field required"},
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Field required"},
		{"zero max_tokens", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Input should be greater than or equal to 1"},
		{"fractional max_tokens", `{"model":"m","max_tokens":1.5,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Input should be a valid integer"},
		{"string max_tokens", `{"model":"m","max_tokens":"64","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Input should be a valid integer"},
		{"no messages", `{"model":"m","max_tokens":64}`, "messages: Field required"},
		{"messages object", `{"model":"m","max_tokens":64,"messages":{"role":"user"}}`, "messages: Input should be a valid list"},
		{"empty messages", `{"model":"m","max_tokens":64,"messages":[]}`, "messages: at least one message is required"},
		{"system role", `{"model":"m","max_tokens":64,"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"hi"}]}`, "messages.0.role: Input should be 'user' or 'assistant'"},
		{"assistant first", `{"model":"m","max_tokens":64,"messages":[{"role":"assistant","content":"hi"},{"role":"user","content":"hi"}]}`, `first message must use the "user" role`},
		{"no content", `{"model":"m","max_tokens":64,"messages":[{"role":"user"}]}`, "messages.0.content: Field required"},
		{"empty content", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":""}]}`, "messages.0: all messages must have non-empty content"},
		{"numeric content", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":5}]}`, "messages.0.content: Input should be a valid list"},
		{"unknown block", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":[{"type":"image_url","image_url":"x"}]}]}`, "messages.0.content.0: Input tag 'image_url'"},
		{"openai field", `{"model":"m","max_tokens":64,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "stream_options: Extra inputs are not permitted"},
		{"orphan tool_result", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]}`,
			"messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"},
		{"tool_result for another id", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"weather?"},
			{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},{"type":"tool_result","tool_use_id":"toolu_2","content":"rain"}]}]}`,
			"messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2"},
		{"unanswered tool_use", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"weather?"},
			{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},
			{"role":"user","content":"go on"}]}`, "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"},
		{"thinking without signature", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"hi"},
			{"role":"assistant","content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"hello"}]},{"role":"user","content":"again"}]}`,
			"messages.1.content.0.thinking.signature: Field required"},
		{"small budget", `{"model":"m","max_tokens":4096,"thinking":{"type":"enabled","budget_tokens":512},"messages":[{"role":"user","content":"hi"}]}`,
			"thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"},
		{"budget over max_tokens", `{"model":"m","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":2048},"messages":[{"role":"user","content":"hi"}]}`,
			"`max_tokens` must be greater than `thinking.budget_tokens`"},
		{"thinking with temperature", `{"model":"m","max_tokens":4096,"temperature":0.2,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hi"}]}`,
			"`temperature` may only be set to 1 when thinking is enabled"},
		{"hot temperature", `{"model":"m","max_tokens":64,"temperature":1.5,"messages":[{"role":"user","content":"hi"}]}`, "temperature: Input should be less than or equal to 1"},
		{"tool without schema", `{"model":"m","max_tokens":64,"tools":[{"name":"get_weather"}],"messages":[{"role":"user","content":"hi"}]}`, "tools.0.custom.input_schema: Field required"},
		{"openai-style tool", `{"model":"m","max_tokens":64,"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`,
			"tools.0: Input tag 'function'"},
	}
	for _, c := range bodies {
		resp, b := postTo(t, p.URL+url, antHeaders, c.body)
		checkAnthropicError(t, c.name, resp, b, 400, "invalid_request_error", c.want)
	}
	if n := p.Count(); n != len(auth)+len(bodies) {
		t.Fatalf("recorded %d requests", n)
	}
}

func checkAnthropicError(t *testing.T, name string, resp *http.Response, b []byte, status int, typ, want string) {
	t.Helper()
	e := gjson.ParseBytes(b)
	if resp.StatusCode != status || e.Get("type").Str != "error" || e.Get("error.type").Str != typ ||
		!strings.Contains(e.Get("error.message").Str, want) || !strings.HasPrefix(e.Get("request_id").Str, "req_") ||
		resp.Header.Get("request-id") != e.Get("request_id").Str {
		t.Errorf("%s: %d %s", name, resp.StatusCode, b)
	}
}

func TestAnthropicToolUse(t *testing.T) {
	p := startAnthropic(t)
	_, b := postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":256,`+weatherTool+`,
		"messages":[{"role":"user","content":"What's the weather in Paris?"}]}`)
	m := gjson.ParseBytes(b)
	use := m.Get("content.0")
	id := use.Get("id").Str
	if m.Get("content.#").Int() != 1 || use.Get("type").Str != "tool_use" || !strings.HasPrefix(id, "toolu_") ||
		use.Get("name").Str != "get_weather" || use.Get("input").Raw != `{"city":"Paris"}` ||
		m.Get("stop_reason").Str != "tool_use" || m.Get("usage.output_tokens").Int() != 2 || m.Get("usage.input_tokens").Int() != 5 {
		t.Fatalf("%s", b)
	}

	// The tool's result goes back: the answer is text.
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":256,`+weatherTool+`,
		"messages":[{"role":"user","content":"What's the weather in Paris?"},
		{"role":"assistant","content":[`+use.Raw+`]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"`+id+`","content":"Sunny, 24 C"}]}]}`)
	m = gjson.ParseBytes(b)
	if m.Get("content.0.type").Str != "text" || m.Get("stop_reason").Str != "end_turn" || m.Get("usage.input_tokens").Int() != 8 {
		t.Fatalf("%s", b)
	}

	// A schema without a city: empty input. tool_choice none: no tool.
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"m","max_tokens":256,
		"tools":[{"name":"now","input_schema":{"type":"object"}},{"name":"get_weather","input_schema":{"type":"object"}}],
		"messages":[{"role":"user","content":[{"type":"text","text":"Weather please"}]}]}`)
	if m = gjson.ParseBytes(b); m.Get("content.0.name").Str != "now" || m.Get("content.0.input").Raw != "{}" {
		t.Fatalf("%s", b)
	}
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"m","max_tokens":256,`+weatherTool+`,"tool_choice":{"type":"none"},
		"messages":[{"role":"user","content":"weather?"}]}`)
	if m = gjson.ParseBytes(b); m.Get("content.0.type").Str != "text" {
		t.Fatalf("%s", b)
	}
}

func TestAnthropicThinkingAndLimits(t *testing.T) {
	p := startAnthropic(t)
	_, b := postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":4096,
		"thinking":{"type":"enabled","budget_tokens":2048},"messages":[{"role":"user","content":"What is 1+1?"}]}`)
	m := gjson.ParseBytes(b)
	if m.Get("content.#").Int() != 2 || m.Get("content.0.type").Str != "thinking" || m.Get("content.0.thinking").Str != thoughtText ||
		m.Get("content.0.signature").Str == "" || m.Get("content.1.text").Str != "1+1 equals 2." ||
		m.Get("usage.output_tokens").Int() != int64(words(thoughtText)+3) {
		t.Fatalf("%s", b)
	}

	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
	if m = gjson.ParseBytes(b); m.Get("content.0.text").Str != "1+1 equals" || m.Get("stop_reason").Str != "max_tokens" ||
		m.Get("usage.output_tokens").Int() != 2 {
		t.Fatalf("%s", b)
	}
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"m","max_tokens":64,"stop_sequences":["2.","equals"],"messages":[{"role":"user","content":"hi"}]}`)
	if m = gjson.ParseBytes(b); m.Get("content.0.text").Str != "1+1 " || m.Get("stop_reason").Str != "stop_sequence" ||
		m.Get("stop_sequence").Str != "equals" || m.Get("usage.output_tokens").Int() != 1 {
		t.Fatalf("%s", b)
	}
}

func eventNames(events []namedEvent) string {
	var n []string
	for _, e := range events {
		n = append(n, e.name)
	}
	return strings.Join(n, " ")
}

func TestAnthropicStream(t *testing.T) {
	p := startAnthropic(t)
	resp, b := postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,
		"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"What is 1+1?"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(resp.Header.Get("request-id"), "req_") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(string(b), "[DONE]") {
		t.Fatal("Anthropic streams have no [DONE]")
	}
	ev := anthropicEvents(t, b)
	if !strings.HasPrefix(string(b), "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"type\":\"message\",") {
		t.Fatalf("%s", b)
	}
	if got := eventNames(ev); got != "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop" {
		t.Fatalf("events %s", got)
	}
	start := gjson.Get(ev[0].data, "message")
	if !strings.HasPrefix(start.Get("id").Str, "msg_") || start.Get("model").Str != "claude-sonnet-4-5" || start.Get("content").Raw != "[]" ||
		start.Get("stop_reason").Type != gjson.Null || start.Get("usage").Raw != `{"cache_creation_input_tokens":0,"cache_read_input_tokens":2,"input_tokens":3,"output_tokens":1}` {
		t.Fatalf("message_start %s", ev[0].data)
	}
	if ev[1].data != `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}` {
		t.Fatalf("content_block_start %s", ev[1].data)
	}
	var text strings.Builder
	for _, e := range ev[3:6] {
		if gjson.Get(e.data, "delta.type").Str != "text_delta" || gjson.Get(e.data, "index").Int() != 0 {
			t.Fatalf("delta %s", e.data)
		}
		text.WriteString(gjson.Get(e.data, "delta.text").Str)
	}
	if text.String() != "1+1 equals 2." {
		t.Fatalf("text %q", text.String())
	}
	d := gjson.Parse(ev[7].data)
	if d.Get("delta.stop_reason").Str != "end_turn" || d.Get("delta.stop_sequence").Type != gjson.Null || d.Get("usage").Raw != `{"output_tokens":3}` {
		t.Fatalf("message_delta %s", ev[7].data)
	}

	// Thinking, then a tool call whose input arrives in fragments.
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{"model":"claude-sonnet-4-5","max_tokens":4096,"stream":true,
		"thinking":{"type":"enabled","budget_tokens":1024},`+weatherTool+`,"messages":[{"role":"user","content":"Weather in Paris?"}]}`)
	ev = anthropicEvents(t, b)
	var thinking, sig, input strings.Builder
	frags, stops := 0, 0
	for _, e := range ev {
		x := gjson.Parse(e.data)
		switch x.Get("delta.type").Str {
		case "thinking_delta":
			thinking.WriteString(x.Get("delta.thinking").Str)
		case "signature_delta":
			sig.WriteString(x.Get("delta.signature").Str)
		case "input_json_delta":
			if x.Get("index").Int() != 1 {
				t.Fatalf("input delta %s", e.data)
			}
			if f := x.Get("delta.partial_json").Str; f != "" {
				frags++
				input.WriteString(f)
			}
		}
		if e.name == "content_block_stop" {
			stops++
		}
	}
	var tool gjson.Result
	for _, e := range ev {
		if e.name == "content_block_start" && gjson.Get(e.data, "index").Int() == 1 {
			tool = gjson.Get(e.data, "content_block")
		}
	}
	if thinking.String() != thoughtText || sig.String() == "" || input.String() != `{"city":"Paris"}` || frags < 2 || stops != 2 ||
		gjson.Get(ev[1].data, "content_block.type").Str != "thinking" || ev[2].name != "ping" ||
		tool.Get("type").Str != "tool_use" || tool.Get("name").Str != "get_weather" || tool.Get("input").Raw != "{}" ||
		!strings.HasPrefix(tool.Get("id").Str, "toolu_") {
		t.Fatalf("%s", b)
	}
	d = gjson.Parse(ev[len(ev)-2].data)
	if d.Get("delta.stop_reason").Str != "tool_use" || d.Get("usage.output_tokens").Int() != int64(words(thoughtText)+2) || ev[len(ev)-1].name != "message_stop" {
		t.Fatalf("%s", b)
	}
}

func TestAnthropicScripted(t *testing.T) {
	p := startAnthropic(t)
	p.Script(
		Reply{Status: 529, Header: http.Header{"Content-Type": {"application/json"}},
			Body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_x"}`},
		Reply{Events: []string{
			`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}`,
			`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
		}},
	)
	resp, b := postTo(t, p.URL+"/v1/messages", nil, `{}`) // a script answers whatever comes
	if resp.StatusCode != 529 || gjson.GetBytes(b, "error.type").Str != "overloaded_error" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_, b = postTo(t, p.URL+"/v1/messages", antHeaders, `{}`)
	if ev := anthropicEvents(t, b); eventNames(ev) != "message_start error" {
		t.Fatalf("%s", b)
	}
	resp, _ = postTo(t, p.URL+"/v1/messages", nil, `{}`) // the script is spent
	if resp.StatusCode != 401 {
		t.Fatalf("%d", resp.StatusCode)
	}
}

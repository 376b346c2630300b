package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// A client protocol as a test speaks it: where it posts, what it sends,
// and how it reads the answer.
type clientProto struct {
	name string // the X-LLM-Client-Protocol it must be detected as
	path string // below the route's prefix
	hdr  []string
	body func(stream bool) string
	// read returns the answer's text and the usage the client was told.
	read func(t *testing.T, body string, stream bool) (text string, in, out int64)
}

var clientProtos = []clientProto{
	{
		name: "openai-chat", path: "/v1/chat/completions",
		body: func(stream bool) string {
			s := `{"model":"client-model","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is 1+1?"}],"max_tokens":64`
			if stream {
				s += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			return s + "}"
		},
		read: readChat,
	},
	{
		name: "anthropic-messages", path: "/v1/messages", hdr: []string{"anthropic-version", "2023-06-01"},
		body: func(stream bool) string {
			return fmt.Sprintf(`{"model":"client-model","system":"Be brief.","max_tokens":64,"messages":[{"role":"user","content":"What is 1+1?"}],"stream":%t}`, stream)
		},
		read: readMessages,
	},
	{
		name: "openai-responses", path: "/v1/responses",
		body: func(stream bool) string {
			return fmt.Sprintf(`{"model":"client-model","instructions":"Be brief.","input":"What is 1+1?","max_output_tokens":64,"stream":%t}`, stream)
		},
		read: readResponses,
	},
}

// A provider protocol: the route that reaches it and what it must receive.
type providerProto struct {
	name   string // X-LLM-Provider-Protocol
	prefix string // the route's uri prefix
	conf   string // the ai-proxy conf
	host   string
	// path is the provider path a call must reach.
	path func(client string, stream bool) string
}

var providerProtos = []providerProto{
	{
		name: "openai-chat", prefix: "/openai",
		conf: `{"provider":"openai","auth":{"header":{"Authorization":"Bearer ` + openAIKey + `"}},"options":{"model":"gpt-4o"}}`,
		host: openAIHost,
		path: func(client string, _ bool) string {
			if client == "openai-responses" {
				return "/v1/responses" // OpenAI serves Responses itself
			}
			return "/v1/chat/completions"
		},
	},
	{
		name: "anthropic-messages", prefix: "/anthropic",
		conf: `{"provider":"anthropic","auth":{"header":{"x-api-key":"` + seeds.AnthropicKey + `"}},"options":{"model":"claude-sonnet-4-5"}}`,
		host: seeds.AnthropicHost,
		path: func(string, bool) string { return "/v1/messages" },
	},
	{
		name: "bedrock-converse", prefix: "/bedrock",
		conf: `{"provider":"bedrock","auth":{"aws":{"access_key_id":"` + seeds.AWSAccessKeyID + `","secret_access_key":"` + seeds.AWSSecretKey + `"}},` +
			`"provider_conf":{"region":"` + seeds.AWSRegion + `"},"options":{"model":"anthropic.claude-3-5-sonnet-20240620-v1:0"}}`,
		host: seeds.BedrockHost,
		path: func(_ string, stream bool) string {
			if stream {
				return "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse-stream"
			}
			return "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
		},
	},
	{
		name: "gemini-generate-content", prefix: "/gemini",
		conf: `{"provider":"gemini","auth":{"header":{"x-goog-api-key":"` + geminiKey + `"}},"options":{"model":"gemini-2.5-flash"},` +
			`"override":{"endpoint":"https://` + geminiHost + `/v1beta/models/{model}:generateContent"}}`,
		host: geminiHost,
		path: func(_ string, stream bool) string {
			if stream {
				return "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
			}
			return "/v1beta/models/gemini-2.5-flash:generateContent"
		},
	},
}

func (e *env) protoRoutes(t *testing.T) {
	t.Helper()
	for _, p := range providerProtos {
		route := `{"id":"` + strings.Trim(p.prefix, "/") + `","uri":"` + p.prefix + `/*","methods":["POST"],"plugins":{"ai-proxy":` + p.conf + `}}`
		e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, route))
	}
}

// Every cell of the matrix, whole and streamed: the provider receives its
// own protocol at its own path, the client reads its own protocol back
// with the provider's answer and usage, and the access-log headers and the
// call log name both protocols and count the tokens.
func TestTranslationMatrix(t *testing.T) {
	e := newEnv(t)
	e.protoRoutes(t)
	for _, p := range providerProtos {
		for _, c := range clientProtos {
			for _, stream := range []bool{false, true} {
				name := fmt.Sprintf("%s→%s/stream=%t", c.name, p.name, stream)
				t.Run(name, func(t *testing.T) {
					resp := e.post(t, p.prefix+c.path, c.body(stream), c.hdr...)
					body := readAll(t, resp)
					if resp.StatusCode != 200 {
						t.Fatalf("%d %s\n%s", resp.StatusCode, body, e.output.String())
					}
					got, ok := e.lastTo(p)
					if !ok {
						t.Fatalf("%s received nothing", p.host)
					}
					if want := p.path(c.name, stream); got.Path != want {
						t.Errorf("provider got path %s, want %s", got.Path, want)
					}
					wantProvider := p.name
					if c.name == "openai-responses" && p.name == "openai-chat" {
						wantProvider = "openai-responses"
					}
					if h := resp.Header.Get("X-LLM-Client-Protocol"); h != c.name {
						t.Errorf("X-LLM-Client-Protocol %q", h)
					}
					if h := resp.Header.Get("X-LLM-Provider-Protocol"); h != wantProvider {
						t.Errorf("X-LLM-Provider-Protocol %q, want %s", h, wantProvider)
					}
					ct := resp.Header.Get("Content-Type")
					if stream != strings.HasPrefix(ct, "text/event-stream") {
						t.Errorf("Content-Type %q for stream=%t", ct, stream)
					}
					text, in, out := c.read(t, body, stream)
					if !strings.Contains(text, "2") {
						t.Errorf("answer text %q\n%s", text, body)
					}
					if in <= 0 || out <= 0 {
						t.Errorf("client was told usage in=%d out=%d\n%s", in, out, body)
					}
					entry := e.callEntry(t, resp.Header.Get("X-LLM-Call-Id"))
					if entry.Get("client_protocol").String() != c.name || entry.Get("provider_protocol").String() != wantProvider {
						t.Errorf("call log protocols: %s", entry.Raw)
					}
					if entry.Get("prompt_tokens").Int() <= 0 || entry.Get("completion_tokens").Int() != out {
						t.Errorf("call log usage %s, client told out=%d", entry.Raw, out)
					}
					if !stream && resp.Header.Get("X-LLM-Completion-Tokens") != fmt.Sprint(out) {
						t.Errorf("X-LLM-Completion-Tokens %q, client told %d", resp.Header.Get("X-LLM-Completion-Tokens"), out)
					}
				})
			}
		}
	}
}

// lastTo is what the fake of a provider protocol received last.
func (e *env) lastTo(p providerProto) (fakes.Request, bool) {
	switch p.name {
	case "bedrock-converse":
		return e.bedrock.Last()
	case "gemini-generate-content":
		return e.geminiNative.Last()
	}
	return e.fakes[p.host].Last()
}

func readChat(t *testing.T, body string, stream bool) (text string, in, out int64) {
	t.Helper()
	if !stream {
		return gjson.Get(body, "choices.0.message.content").String(), gjson.Get(body, "usage.prompt_tokens").Int(), gjson.Get(body, "usage.completion_tokens").Int()
	}
	var b strings.Builder
	sawDone := false
	for _, data := range sseData(body) {
		if data == "[DONE]" {
			sawDone = true
			continue
		}
		if !gjson.Valid(data) || gjson.Get(data, "object").String() != "chat.completion.chunk" {
			t.Errorf("not a chunk: %s", data)
		}
		b.WriteString(gjson.Get(data, "choices.0.delta.content").String())
		if u := gjson.Get(data, "usage"); u.IsObject() {
			in, out = u.Get("prompt_tokens").Int(), u.Get("completion_tokens").Int()
		}
	}
	if !sawDone {
		t.Errorf("stream without [DONE]:\n%s", body)
	}
	return b.String(), in, out
}

func readMessages(t *testing.T, body string, stream bool) (text string, in, out int64) {
	t.Helper()
	if !stream {
		if gjson.Get(body, "type").String() != "message" {
			t.Errorf("not a message: %s", body)
		}
		for _, b := range gjson.Get(body, "content").Array() {
			text += b.Get("text").String()
		}
		u := gjson.Get(body, "usage")
		return text, u.Get("input_tokens").Int() + u.Get("cache_read_input_tokens").Int(), u.Get("output_tokens").Int()
	}
	var names []string
	var b strings.Builder
	for _, ev := range sseEvents(body) {
		names = append(names, ev.name)
		if gjson.Get(ev.data, "type").String() != ev.name {
			t.Errorf("event %s carries type %s", ev.name, gjson.Get(ev.data, "type"))
		}
		switch ev.name {
		case "message_start":
			in = gjson.Get(ev.data, "message.usage.input_tokens").Int()
		case "content_block_delta":
			b.WriteString(gjson.Get(ev.data, "delta.text").String())
		case "message_delta":
			// Anthropic's split usage: input on message_start, output here
			// (with input again when the start could not know it).
			if n := gjson.Get(ev.data, "usage.input_tokens").Int(); n > 0 {
				in = n
			}
			out = gjson.Get(ev.data, "usage.output_tokens").Int()
		}
	}
	if len(names) < 4 || names[0] != "message_start" || names[len(names)-1] != "message_stop" {
		t.Errorf("event sequence %v", names)
	}
	return b.String(), in, out
}

func readResponses(t *testing.T, body string, stream bool) (text string, in, out int64) {
	t.Helper()
	if !stream {
		if gjson.Get(body, "object").String() != "response" {
			t.Errorf("not a response: %s", body)
		}
		for _, item := range gjson.Get(body, "output").Array() {
			if item.Get("type").String() == "message" {
				text += item.Get("content.0.text").String()
			}
		}
		return text, gjson.Get(body, "usage.input_tokens").Int(), gjson.Get(body, "usage.output_tokens").Int()
	}
	var b strings.Builder
	var last string
	for _, ev := range sseEvents(body) {
		last = ev.name
		switch ev.name {
		case "response.output_text.delta":
			b.WriteString(gjson.Get(ev.data, "delta").String())
		case "response.completed":
			in, out = gjson.Get(ev.data, "response.usage.input_tokens").Int(), gjson.Get(ev.data, "response.usage.output_tokens").Int()
		}
	}
	if last != "response.completed" {
		t.Errorf("stream ends with %s", last)
	}
	return b.String(), in, out
}

type sseEvent struct{ name, data string }

// sseEvents splits a server-sent-event body into its events.
func sseEvents(body string) []sseEvent {
	var evs []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case line == "":
			if cur.data != "" || cur.name != "" {
				evs = append(evs, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event:"):
			cur.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			cur.data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	if cur.data != "" {
		evs = append(evs, cur)
	}
	return evs
}

func sseData(body string) []string {
	var out []string
	for _, ev := range sseEvents(body) {
		out = append(out, ev.data)
	}
	return out
}

// Errors keep the provider's status and take the client's shape: a 429
// from Anthropic reaches an OpenAI client as an OpenAI error, a 400 from
// OpenAI reaches an Anthropic client as an Anthropic error, and the relay's
// own refusals speak the client's protocol too.
func TestTranslatedErrors(t *testing.T) {
	e := newEnv(t)
	e.protoRoutes(t)

	e.fakes[seeds.AnthropicHost].Script(fakes.Reply{Status: 429, Header: http.Header{"Retry-After": {"7"}, "Content-Type": {"application/json"}},
		Body: `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_1"}`})
	resp := e.post(t, "/anthropic/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`)
	body := readAll(t, resp)
	if resp.StatusCode != 429 || !strings.Contains(gjson.Get(body, "error.message").String(), "per-minute rate limit") || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("chat client got %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	e.fakes[openAIHost].Script(fakes.Reply{Status: 400, Header: http.Header{"Content-Type": {"application/json"}},
		Body: `{"error":{"message":"Invalid 'messages[0].content': string too long.","type":"invalid_request_error","param":"messages[0].content","code":"string_above_max_length"}}`})
	resp = e.post(t, "/openai/v1/messages", `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}`, "anthropic-version", "2023-06-01")
	body = readAll(t, resp)
	if resp.StatusCode != 400 || gjson.Get(body, "type").String() != "error" || gjson.Get(body, "error.type").String() != "invalid_request_error" ||
		!strings.Contains(gjson.Get(body, "error.message").String(), "string too long") {
		t.Errorf("anthropic client got %d %s", resp.StatusCode, body)
	}

	// The relay's own refusal of a body it cannot read.
	resp = e.post(t, "/openai/v1/messages", `{"model":"m","max_tokens":9,"messages":"hi"}`, "anthropic-version", "2023-06-01")
	body = readAll(t, resp)
	if resp.StatusCode != 400 || gjson.Get(body, "type").String() != "error" || !strings.Contains(gjson.Get(body, "error.message").String(), "messages") {
		t.Errorf("anthropic client got %d %s", resp.StatusCode, body)
	}
	resp = e.post(t, "/gemini/v1/responses", `{"model":"m","input":"hi","previous_response_id":"resp_1"}`)
	body = readAll(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(gjson.Get(body, "error.message").String(), "previous_response_id") {
		t.Errorf("responses client got %d %s", resp.StatusCode, body)
	}
	// A mid-stream error event from Anthropic cuts an OpenAI client's
	// stream (a truncated stream must not look complete).
	e.fakes[seeds.AnthropicHost].Script(fakes.Reply{Events: []string{
		`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`,
		`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
	}})
	resp = e.post(t, "/anthropic/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	b, err := readBody(resp)
	if err == nil || strings.Contains(b, "[DONE]") {
		t.Errorf("a broken translated stream ended cleanly: %q (%v)", b, err)
	}
}

// The client's credentials and another protocol's headers never reach a
// provider; Anthropic gets the client's version and betas, or a version.
func TestTranslatedHeaderHygiene(t *testing.T) {
	e := newEnv(t)
	e.protoRoutes(t)
	hdr := []string{"Authorization", "Bearer sk-client", "x-api-key", "client-key", "api-key", "client-key-2", "Cookie", "s=1",
		"anthropic-version", "2023-06-01", "anthropic-beta", "prompt-caching-2024-07-31"}
	msg := `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"What is 1+1?"}]}`
	if resp := e.post(t, "/anthropic/v1/messages", msg, hdr...); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, readAll(t, resp))
	}
	got := e.lastRequest(t, seeds.AnthropicHost)
	if got.Header.Get("X-Api-Key") != seeds.AnthropicKey || got.Header.Get("Authorization") != "" || got.Header.Get("Api-Key") != "" || got.Header.Get("Cookie") != "" {
		t.Errorf("anthropic got credentials %v", got.Header)
	}
	if got.Header.Get("Anthropic-Beta") != "prompt-caching-2024-07-31" || got.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("anthropic got version/beta %v", got.Header)
	}
	for _, p := range []string{"/openai/v1/messages", "/gemini/v1/messages", "/bedrock/v1/messages"} {
		if resp := e.post(t, p, msg, hdr...); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, readAll(t, resp))
		}
	}
	var others []fakes.Request
	if r, ok := e.fakes[openAIHost].Last(); ok {
		others = append(others, r)
	}
	if r, ok := e.geminiNative.Last(); ok {
		others = append(others, r)
	}
	if r, ok := e.bedrock.Last(); ok {
		others = append(others, r)
	}
	if len(others) != 3 {
		t.Fatalf("%d providers reached", len(others))
	}
	for _, r := range others {
		for _, h := range []string{"Anthropic-Version", "Anthropic-Beta", "X-Api-Key", "Api-Key", "Cookie"} {
			if r.Header.Get(h) != "" {
				t.Errorf("%s%s got %s: %q", r.Host, r.Path, h, r.Header.Get(h))
			}
		}
	}
	if a := others[0].Header.Get("Authorization"); a != "Bearer "+openAIKey {
		t.Errorf("openai got Authorization %q", a)
	}
	// A chat client reaching Anthropic sends no version: the relay adds one.
	if resp := e.post(t, "/anthropic/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, readAll(t, resp))
	}
	if v := e.lastRequest(t, seeds.AnthropicHost).Header.Get("Anthropic-Version"); v != "2023-06-01" {
		t.Errorf("anthropic-version %q", v)
	}
}

// override.llm_options.max_tokens lands in each provider protocol's own
// field; without request_body_force_override the client's value wins.
func TestLLMOptionsMaxTokens(t *testing.T) {
	e := newEnv(t)
	for _, p := range providerProtos {
		conf := strings.TrimSuffix(p.conf, "}") + `,"override":{"llm_options":{"max_tokens":77}}}`
		if strings.Contains(p.conf, `"override"`) {
			conf = strings.Replace(p.conf, `"override":{`, `"override":{"llm_options":{"max_tokens":77},`, 1)
		}
		route := `{"id":"` + strings.Trim(p.prefix, "/") + `","uri":"` + p.prefix + `/*","methods":["POST"],"plugins":{"ai-proxy":` + conf + `}}`
		e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, route))
	}
	want := map[string]string{
		"openai-chat": "max_completion_tokens", "anthropic-messages": "max_tokens",
		"bedrock-converse": "inferenceConfig.maxTokens", "gemini-generate-content": "generationConfig.maxOutputTokens",
	}
	for _, p := range providerProtos {
		resp := e.post(t, p.prefix+"/v1/chat/completions", `{"messages":[{"role":"user","content":"What is 1+1?"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p.name, resp.StatusCode, readAll(t, resp))
		}
		got, _ := e.lastTo(p)
		if v := gjson.GetBytes(got.Body, want[p.name]).Int(); v != 77 {
			t.Errorf("%s got %s = %d: %s", p.name, want[p.name], v, got.Body)
		}
		resp = e.post(t, p.prefix+"/v1/chat/completions", `{"messages":[{"role":"user","content":"What is 1+1?"}],"max_tokens":12}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p.name, resp.StatusCode, readAll(t, resp))
		}
		got, _ = e.lastTo(p)
		field := want[p.name]
		if p.name == "openai-chat" {
			field = "max_tokens" // the client's own field, passed through
		}
		if v := gjson.GetBytes(got.Body, field).Int(); v != 12 {
			t.Errorf("%s: the client's 12 did not win: %s", p.name, got.Body)
		}
	}
}

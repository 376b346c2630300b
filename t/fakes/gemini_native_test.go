package fakes

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

const (
	geminiPath = "/v1beta/models/gemini-2.5-flash:generateContent"
	vertexPath = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:"
	geminiKey  = "AIza-test-key"
	weatherFn  = `"tools":[{"functionDeclarations":[{"name":"get_weather","description":"Current weather","parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING"}},"required":["city"]}}]}]`
)

var keyHeader = map[string]string{"x-goog-api-key": geminiKey}

func startGemini(t *testing.T) *Provider {
	p := StartProvider(ProviderOptions{Flavor: "gemini-native", Keys: map[string]string{"x-goog-api-key": geminiKey}})
	t.Cleanup(p.Close)
	return p
}

// geminiFrames parses a Gemini SSE stream: each frame is exactly
// "data: <GenerateContentResponse>" and frames end with "\r\n\r\n".
func geminiFrames(t *testing.T, body []byte) []gjson.Result {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\r\n\r\n") {
		t.Fatalf("stream does not end with a frame separator: %q", s)
	}
	var out []gjson.Result
	for _, frame := range strings.Split(strings.TrimSuffix(s, "\r\n\r\n"), "\r\n\r\n") {
		data, ok := strings.CutPrefix(frame, "data: ")
		if !ok || strings.ContainsAny(data, "\r\n") || !json.Valid([]byte(data)) {
			t.Fatalf("bad frame %q", frame)
		}
		out = append(out, gjson.Parse(data))
	}
	return out
}

func geminiUsage(r gjson.Result) [4]int64 {
	u := r.Get("usageMetadata")
	return [4]int64{u.Get("promptTokenCount").Int(), u.Get("candidatesTokenCount").Int(), u.Get("thoughtsTokenCount").Int(), u.Get("totalTokenCount").Int()}
}

func TestGeminiNativeGenerate(t *testing.T) {
	p := startGemini(t)
	body := `{"systemInstruction":{"parts":[{"text":"Answer in one line."}]},
		"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}],
		"generationConfig":{"temperature":0.7,"maxOutputTokens":512}}`
	resp, b := postTo(t, p.URL+geminiPath, keyHeader, body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	r := gjson.ParseBytes(b)
	c := r.Get("candidates.0")
	if r.Get("candidates.#").Int() != 1 || c.Get("content.role").Str != "model" || c.Get("content.parts.#").Int() != 1 ||
		c.Get("content.parts.0.text").Str != "1+1 equals 2." || c.Get("finishReason").Str != "STOP" || !c.Get("index").Exists() ||
		r.Get("modelVersion").Str != "gemini-2.5-flash" || r.Get("responseId").Str == "" || r.Get("createTime").Exists() {
		t.Fatalf("%s", b)
	}
	if u := geminiUsage(r); u != [4]int64{7, 3, 0, 10} || !r.Get("usageMetadata.thoughtsTokenCount").Exists() {
		t.Fatalf("usage %v: %s", u, b)
	}

	// The key may come as ?key=, and snake_case field names are accepted.
	resp, b = postTo(t, p.URL+geminiPath+"?key="+geminiKey, nil, `{"system_instruction":{"parts":[{"text":"Be brief."}]},"contents":[{"parts":[{"text":"hi"}]}]}`)
	if resp.StatusCode != 200 || geminiUsage(gjson.ParseBytes(b))[0] != 3 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	reqs := p.Requests()
	if len(reqs) != 2 || reqs[0].Path != geminiPath || reqs[0].Header.Get("x-goog-api-key") != geminiKey ||
		gjson.GetBytes(reqs[0].Body, "generationConfig.maxOutputTokens").Int() != 512 ||
		reqs[1].RawQuery != "key="+geminiKey || reqs[1].Header.Get("x-goog-api-key") != "" {
		t.Fatalf("recorded %+v", reqs)
	}

	_, b = postTo(t, p.URL+"/v1beta/models/gemini-2.5-flash:countTokens", keyHeader, `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}]}`)
	if gjson.GetBytes(b, "totalTokens").Int() != 3 {
		t.Fatalf("countTokens %s", b)
	}
}

func checkGoogleError(t *testing.T, name string, resp *http.Response, b []byte, status int, code, want string) gjson.Result {
	t.Helper()
	e := gjson.ParseBytes(b)
	if resp.StatusCode != status || !e.IsObject() || e.Get("error.code").Int() != int64(status) || e.Get("error.status").Str != code ||
		!strings.Contains(e.Get("error.message").Str, want) {
		t.Errorf("%s: %d %s", name, resp.StatusCode, b)
	}
	return e
}

func TestGeminiNativeRefusals(t *testing.T) {
	p := startGemini(t)
	ok := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	resp, b := postTo(t, p.URL+geminiPath, nil, ok)
	checkGoogleError(t, "no key", resp, b, 403, "PERMISSION_DENIED", "unregistered callers")
	resp, b = postTo(t, p.URL+geminiPath, map[string]string{"x-goog-api-key": "AIza-other"}, ok)
	e := checkGoogleError(t, "bad key", resp, b, 400, "INVALID_ARGUMENT", "API key not valid")
	if e.Get("error.details.0.reason").Str != "API_KEY_INVALID" {
		t.Errorf("details %s", b)
	}
	resp, b = postTo(t, p.URL+geminiPath+"?key=AIza-other", nil, ok)
	checkGoogleError(t, "bad query key", resp, b, 400, "INVALID_ARGUMENT", "API key not valid")
	resp, b = postTo(t, p.URL+"/v1beta/openai/chat/completions", keyHeader, ok)
	checkGoogleError(t, "openai path", resp, b, 404, "NOT_FOUND", "not found")
	resp, b = postTo(t, p.URL+"/v1beta/models/gemini-2.5-flash:embedText", keyHeader, ok)
	checkGoogleError(t, "unknown method", resp, b, 404, "NOT_FOUND", "not supported for embedText")

	call := `{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]}`
	answer := `{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"sky":"sunny"}}}]}`
	user := `{"role":"user","parts":[{"text":"Weather in Paris?"}]}`
	bodies := []struct{ name, body, want string }{
		{"not json", `{"contents":`, "Invalid JSON payload received"},
		{"no contents", `{"generationConfig":{}}`, "contents is not specified"},
		{"empty contents", `{"contents":[]}`, "contents is not specified"},
		{"openai field", `{"messages":[{"role":"user","content":"hi"}],"contents":[` + user + `]}`, `Unknown name "messages"`},
		{"assistant role", `{"contents":[{"role":"assistant","parts":[{"text":"hi"}]}]}`, "Please use a valid role: user, model."},
		{"no parts", `{"contents":[{"role":"user"}]}`, "contents[0].parts: contents.parts must not be empty"},
		{"empty part", `{"contents":[{"role":"user","parts":[{}]}]}`, "contents[0].parts[0].data: required oneof field 'data'"},
		{"response without call", `{"contents":[` + user + `,` + answer + `]}`, "function response turn comes immediately after a function call turn"},
		{"response first", `{"contents":[` + answer + `]}`, "function response turn comes immediately after a function call turn"},
		{"two responses, one call", `{"contents":[` + user + `,` + call + `,{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{}}},{"functionResponse":{"name":"get_weather","response":{}}}]}]}`,
			"number of function response parts is equal to the number of function call parts"},
		{"call after model", `{"contents":[` + user + `,{"role":"model","parts":[{"text":"let me see"}]},` + call + `]}`, "function call turn comes immediately after a user turn"},
		{"nameless response", `{"contents":[` + user + `,` + call + `,{"role":"user","parts":[{"functionResponse":{"response":{}}}]}]}`, "function_response.name: Name cannot be empty"},
		{"bad mime", `{"contents":[` + user + `],"generationConfig":{"responseMimeType":"text/html"}}`, "allowed mimetypes"},
		{"hot temperature", `{"contents":[` + user + `],"generationConfig":{"temperature":3}}`, "temperature"},
	}
	for _, c := range bodies {
		resp, b := postTo(t, p.URL+geminiPath, keyHeader, c.body)
		checkGoogleError(t, c.name, resp, b, 400, "INVALID_ARGUMENT", c.want)
	}
	// The function call round trip itself is valid.
	resp, b = postTo(t, p.URL+geminiPath, keyHeader, `{`+weatherFn+`,"contents":[`+user+`,`+call+`,`+answer+`]}`)
	if r := gjson.ParseBytes(b); resp.StatusCode != 200 || r.Get("candidates.0.content.parts.0.text").Str != "1+1 equals 2." {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestGeminiNativeVertex(t *testing.T) {
	p := StartProvider(ProviderOptions{Flavor: "gemini-native", TokenCheck: func(tok string) bool { return tok == "ya29.good" }})
	defer p.Close()
	bearer := map[string]string{"Authorization": "Bearer ya29.good"}
	body := `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}]}`
	resp, b := postTo(t, p.URL+vertexPath+"generateContent", bearer, body)
	r := gjson.ParseBytes(b)
	if resp.StatusCode != 200 || r.Get("candidates.0.content.parts.0.text").Str != "1+1 equals 2." || r.Get("createTime").Str == "" ||
		r.Get("usageMetadata.trafficType").Str != "ON_DEMAND" || geminiUsage(r) != [4]int64{3, 3, 0, 6} {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	resp, b = postTo(t, p.URL+vertexPath+"generateContent", map[string]string{"Authorization": "Bearer ya29.stale"}, body)
	checkGoogleError(t, "bad token", resp, b, 401, "UNAUTHENTICATED", "invalid authentication credentials")
	resp, b = postTo(t, p.URL+vertexPath+"generateContent", map[string]string{"x-goog-api-key": geminiKey}, body)
	checkGoogleError(t, "key on vertex", resp, b, 401, "UNAUTHENTICATED", "invalid authentication credentials")
	resp, b = postTo(t, p.URL+vertexPath+"generateContent", bearer, `{"contents":[{"parts":[{"text":"hi"}]}]}`)
	checkGoogleError(t, "vertex wants a role", resp, b, 400, "INVALID_ARGUMENT", "valid role")

	resp, b = postTo(t, p.URL+vertexPath+"streamGenerateContent?alt=sse", bearer, body)
	frames := geminiFrames(t, b)
	last := frames[len(frames)-1]
	if resp.StatusCode != 200 || len(frames) != 3 || last.Get("createTime").Str == "" || geminiUsage(last) != [4]int64{3, 3, 0, 6} {
		t.Fatalf("%s", b)
	}
	if reqs := p.Requests(); reqs[0].Path != vertexPath+"generateContent" || reqs[len(reqs)-1].RawQuery != "alt=sse" ||
		reqs[0].Header.Get("Authorization") != "Bearer ya29.good" {
		t.Fatalf("recorded %+v", reqs)
	}
}

func TestGeminiNativeFunctionCall(t *testing.T) {
	p := startGemini(t)
	_, b := postTo(t, p.URL+geminiPath, keyHeader, `{`+weatherFn+`,"contents":[{"role":"user","parts":[{"text":"What's the weather in Paris?"}]}]}`)
	r := gjson.ParseBytes(b)
	fc := r.Get("candidates.0.content.parts.0.functionCall")
	if r.Get("candidates.0.content.parts.#").Int() != 1 || fc.Get("name").Str != "get_weather" || fc.Get("args").Raw != `{"city":"Paris"}` ||
		r.Get("candidates.0.finishReason").Str != "STOP" || geminiUsage(r) != [4]int64{5, 2, 0, 7} {
		t.Fatalf("%s", b)
	}
	// A declaration without a city gets empty args; mode NONE calls nothing.
	_, b = postTo(t, p.URL+geminiPath, keyHeader, `{"tools":[{"functionDeclarations":[{"name":"now"}]}],"contents":[{"role":"user","parts":[{"text":"weather?"}]}]}`)
	if fc := gjson.GetBytes(b, "candidates.0.content.parts.0.functionCall"); fc.Get("name").Str != "now" || fc.Get("args").Raw != "{}" {
		t.Fatalf("%s", b)
	}
	_, b = postTo(t, p.URL+geminiPath, keyHeader, `{`+weatherFn+`,"toolConfig":{"functionCallingConfig":{"mode":"NONE"}},"contents":[{"role":"user","parts":[{"text":"weather?"}]}]}`)
	if gjson.GetBytes(b, "candidates.0.content.parts.0.text").Str != "1+1 equals 2." {
		t.Fatalf("%s", b)
	}
	// Streamed, the call is one chunk with the complete usage.
	_, b = postTo(t, p.URL+"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", keyHeader,
		`{`+weatherFn+`,"contents":[{"role":"user","parts":[{"text":"What's the weather in Paris?"}]}]}`)
	frames := geminiFrames(t, b)
	if len(frames) != 1 || frames[0].Get("candidates.0.content.parts.0.functionCall.args.city").Str != "Paris" ||
		frames[0].Get("candidates.0.finishReason").Str != "STOP" || geminiUsage(frames[0]) != [4]int64{5, 2, 0, 7} {
		t.Fatalf("%s", b)
	}
}

func TestGeminiNativeThoughtsAndJSON(t *testing.T) {
	p := startGemini(t)
	_, b := postTo(t, p.URL+geminiPath, keyHeader, `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}],
		"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":1024}}}`)
	r := gjson.ParseBytes(b)
	parts := r.Get("candidates.0.content.parts")
	tw := int64(words(thoughtText))
	if parts.Get("#").Int() != 2 || !parts.Get("0.thought").Bool() || parts.Get("0.text").Str != thoughtText ||
		parts.Get("1.thought").Exists() || parts.Get("1.text").Str != "1+1 equals 2." || geminiUsage(r) != [4]int64{3, 3, tw, 6 + tw} {
		t.Fatalf("%s", b)
	}
	// A thinking budget without includeThoughts: thoughts counted, not shown.
	_, b = postTo(t, p.URL+geminiPath, keyHeader, `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}],
		"generation_config":{"thinking_config":{"thinking_budget":512}}}`)
	if r = gjson.ParseBytes(b); r.Get("candidates.0.content.parts.#").Int() != 1 || geminiUsage(r) != [4]int64{3, 3, tw, 6 + tw} {
		t.Fatalf("%s", b)
	}

	_, b = postTo(t, p.URL+geminiPath, keyHeader, `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}],
		"generationConfig":{"responseMimeType":"application/json"}}`)
	text := gjson.GetBytes(b, "candidates.0.content.parts.0.text").Str
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil || v["answer"] != "1+1 equals 2." {
		t.Fatalf("%q %v", text, err)
	}
	_, b = postTo(t, p.URL+geminiPath, keyHeader, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":2}}`)
	if r = gjson.ParseBytes(b); r.Get("candidates.0.content.parts.0.text").Str != "1+1 equals" || r.Get("candidates.0.finishReason").Str != "MAX_TOKENS" {
		t.Fatalf("%s", b)
	}
}

func TestGeminiNativeStream(t *testing.T) {
	p := startGemini(t)
	body := `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true}}}`
	resp, b := postTo(t, p.URL+"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", keyHeader, body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || strings.Contains(string(b), "[DONE]") {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, b)
	}
	frames := geminiFrames(t, b)
	tw := words(thoughtText)
	if len(frames) != tw+3 {
		t.Fatalf("%d frames: %s", len(frames), b)
	}
	var thinking, text strings.Builder
	id := frames[0].Get("responseId").Str
	for i, f := range frames {
		part := f.Get("candidates.0.content.parts.0")
		if f.Get("candidates.0.content.parts.#").Int() != 1 || f.Get("candidates.0.content.role").Str != "model" ||
			f.Get("modelVersion").Str != "gemini-2.5-flash" || f.Get("responseId").Str != id || id == "" {
			t.Fatalf("frame %d: %s", i, f.Raw)
		}
		if i < tw != part.Get("thought").Bool() {
			t.Fatalf("frame %d: thought order: %s", i, f.Raw)
		}
		if part.Get("thought").Bool() {
			thinking.WriteString(part.Get("text").Str)
		} else {
			text.WriteString(part.Get("text").Str)
		}
		if final := i == len(frames)-1; f.Get("candidates.0.finishReason").Exists() != final {
			t.Fatalf("frame %d: finishReason: %s", i, f.Raw)
		}
	}
	last := frames[len(frames)-1]
	if thinking.String() != thoughtText || text.String() != "1+1 equals 2." || geminiUsage(last) != [4]int64{3, 3, int64(tw), int64(6 + tw)} ||
		last.Get("candidates.0.finishReason").Str != "STOP" {
		t.Fatalf("%s", b)
	}
	// Usage on earlier chunks is partial; summing the chunks over-counts.
	if u := geminiUsage(frames[tw]); u[1] != 1 || u[3] != int64(3+tw+1) {
		t.Fatalf("partial usage %v", u)
	}

	// Without alt=sse the stream is one JSON array of the same responses.
	resp, b = postTo(t, p.URL+"/v1beta/models/gemini-2.5-flash:streamGenerateContent", keyHeader, `{"contents":[{"role":"user","parts":[{"text":"What is 1+1?"}]}]}`)
	arr := gjson.ParseBytes(b)
	if resp.StatusCode != 200 || !arr.IsArray() || len(arr.Array()) != 3 || geminiUsage(arr.Get("2")) != [4]int64{3, 3, 0, 6} {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestGeminiNativeScripted(t *testing.T) {
	p := startGemini(t)
	p.Script(
		Reply{Status: 429, Body: `{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}`},
		Reply{Events: []string{`{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"index":0}]}`}},
	)
	resp, b := postTo(t, p.URL+geminiPath, nil, `{}`)
	if resp.StatusCode != 429 || gjson.GetBytes(b, "error.status").Str != "RESOURCE_EXHAUSTED" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_, b = postTo(t, p.URL+geminiPath, nil, `{}`)
	if frames := geminiFrames(t, b); len(frames) != 1 || frames[0].Get("candidates.0.content.parts.0.text").Str != "hi" {
		t.Fatalf("%q", b)
	}
}

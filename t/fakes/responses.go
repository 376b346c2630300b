package fakes

// The "openai" flavor's Responses API, POST /v1/responses (providers.md
// §1.4): the request checked as OpenAI does, the Response object and its
// named stream events as openai-go v3 reads them.

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// isResponses: the path is OpenAI's Responses endpoint.
func isResponses(path string) bool { return strings.HasSuffix(path, "/v1/responses") }

// frameFor is frame, except that the openai flavor's Responses stream names
// every event by its type ("event: response.created\ndata: {…}\n\n"), for
// scripted Events too; there is no [DONE].
func (p *Provider) frameFor(r *http.Request, e string) string {
	if r != nil && p.opts.Flavor == "openai" && isResponses(r.URL.Path) {
		if typ := gjson.Get(e, "type"); typ.Type == gjson.String && gjson.Valid(e) {
			return "event: " + typ.Str + "\ndata: " + e + "\n\n"
		}
	}
	return p.frame(e)
}

// respInvalid is a 400 as OpenAI words it; param and code may be "" (null).
type respInvalid struct{ msg, param, code string }

func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func missingParam(param string) *respInvalid {
	return &respInvalid{"Missing required parameter: '" + param + "'.", param, "missing_required_parameter"}
}

func invalidValue(param, got string, supported ...string) *respInvalid {
	quoted := make([]string, len(supported))
	for i, s := range supported {
		quoted[i] = "'" + s + "'"
	}
	list := strings.Join(quoted, ", ")
	if n := len(quoted); n > 1 {
		list = strings.Join(quoted[:n-1], ", ") + ", and " + quoted[n-1]
		if n == 2 {
			list = quoted[0] + " and " + quoted[1]
		}
	}
	return &respInvalid{fmt.Sprintf("Invalid value: '%s'. Supported values are: %s.", got, list), param, "invalid_value"}
}

func invalidType(param, want string, got gjson.Result) *respInvalid {
	return &respInvalid{fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonKind(got)), param, "invalid_type"}
}

// jsonKind names a value's JSON type as OpenAI's errors do.
func jsonKind(v gjson.Result) string {
	switch {
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number && isWholeNumber(v):
		return "an integer"
	case v.Type == gjson.Number:
		return "a decimal"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	case v.IsArray():
		return "an array"
	case v.IsObject():
		return "an object"
	}
	return "null"
}

// responsesFields are the request's top-level parameters.
var responsesFields = stringSet("model", "input", "instructions", "stream", "stream_options", "max_output_tokens",
	"max_tool_calls", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "previous_response_id", "store",
	"temperature", "top_p", "top_logprobs", "text", "truncation", "metadata", "user", "background", "include",
	"conversation", "prompt", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "safety_identifier",
	"service_tier", "context_management", "moderation", "access_programs", "image")

// responsesCheck validates a Responses request as OpenAI does; nil = valid.
func responsesCheck(body []byte) *respInvalid {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return &respInvalid{msg: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"}
	}
	req := gjson.ParseBytes(body)
	var bad *respInvalid
	req.ForEach(func(k, _ gjson.Result) bool {
		if !responsesFields[k.Str] {
			bad = &respInvalid{"Unknown parameter: '" + k.Str + "'.", k.Str, "unknown_parameter"}
		}
		return bad == nil
	})
	if bad != nil {
		return bad
	}
	switch m := req.Get("model"); {
	case !m.Exists() || m.Type == gjson.Null:
		return missingParam("model")
	case m.Type != gjson.String:
		return invalidType("model", "a string", m)
	case m.Str == "":
		return &respInvalid{"Invalid 'model': empty string. Expected a string with minimum length 1, but got an empty string instead.", "model", "empty_string"}
	}
	if bad := responsesInputCheck(req); bad != nil {
		return bad
	}
	if in := req.Get("instructions"); in.Exists() && in.Type != gjson.String && in.Type != gjson.Null {
		return invalidType("instructions", "a string", in)
	}
	if s := req.Get("stream"); s.Exists() && !s.IsBool() && s.Type != gjson.Null {
		return invalidType("stream", "a boolean", s)
	}
	if m := req.Get("max_output_tokens"); m.Exists() && m.Type != gjson.Null {
		switch {
		case !isWholeNumber(m):
			return invalidType("max_output_tokens", "an integer", m)
		case m.Num < 16:
			return &respInvalid{fmt.Sprintf("Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got %d instead.", m.Int()), "max_output_tokens", "integer_below_min_value"}
		}
	}
	for name, limit := range map[string]float64{"temperature": 2, "top_p": 1} {
		v := req.Get(name)
		switch {
		case !v.Exists() || v.Type == gjson.Null:
		case v.Type != gjson.Number:
			return invalidType(name, "a decimal", v)
		case v.Num < 0:
			return &respInvalid{fmt.Sprintf("Invalid '%s': decimal below minimum value. Expected a value >= 0, but got %s instead.", name, v.Raw), name, "decimal_below_min_value"}
		case v.Num > limit:
			return &respInvalid{fmt.Sprintf("Invalid '%s': decimal above maximum value. Expected a value <= %g, but got %s instead.", name, limit, v.Raw), name, "decimal_above_max_value"}
		}
	}
	return responsesToolsCheck(req)
}

// responsesInputCheck: input is a string or a non-empty list of items.
func responsesInputCheck(req gjson.Result) *respInvalid {
	in := req.Get("input")
	switch {
	case !in.Exists() || in.Type == gjson.Null:
		return missingParam("input")
	case in.Type == gjson.String:
		return nil
	case !in.IsArray():
		return invalidType("input", "one of a string or array of input items", in)
	}
	items := in.Array()
	if len(items) == 0 {
		return &respInvalid{"Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.", "input", "empty_array"}
	}
	calls := map[string]bool{}
	for i, it := range items {
		at := fmt.Sprintf("input[%d]", i)
		if !it.IsObject() {
			return invalidType(at, "an object", it)
		}
		typ := it.Get("type")
		if typ.Exists() && typ.Type != gjson.String {
			return invalidType(at+".type", "a string", typ)
		}
		switch typ.Str {
		case "", "message":
			if bad := responsesMessageCheck(at, it); bad != nil {
				return bad
			}
		case "function_call":
			for _, f := range []string{"call_id", "name", "arguments"} {
				v := it.Get(f)
				if !v.Exists() || v.Type == gjson.Null {
					return missingParam(at + "." + f)
				}
				if v.Type != gjson.String {
					return invalidType(at+"."+f, "a string", v)
				}
			}
			calls[it.Get("call_id").Str] = true
		case "function_call_output":
			id, out := it.Get("call_id"), it.Get("output")
			switch {
			case !id.Exists() || id.Type == gjson.Null:
				return missingParam(at + ".call_id")
			case id.Type != gjson.String:
				return invalidType(at+".call_id", "a string", id)
			case !out.Exists() || out.Type == gjson.Null:
				return missingParam(at + ".output")
			case out.Type != gjson.String && !out.IsArray():
				return invalidType(at+".output", "one of a string or array of output content items", out)
			case !calls[id.Str] && !req.Get("previous_response_id").Exists() && !req.Get("conversation").Exists():
				return &respInvalid{"No tool call found for function call output with call_id " + id.Str + ".", "input", ""}
			}
		case "reasoning", "item_reference":
		default:
			return invalidValue(at+".type", typ.Str, "message", "function_call", "function_call_output", "reasoning", "item_reference")
		}
	}
	return nil
}

// responsesMessageCheck: a role and content, a string or typed parts; the
// assistant's parts are output, the others' input.
func responsesMessageCheck(at string, m gjson.Result) *respInvalid {
	role := m.Get("role")
	switch {
	case !role.Exists() || role.Type == gjson.Null:
		return missingParam(at + ".role")
	case role.Type != gjson.String:
		return invalidType(at+".role", "a string", role)
	case !hasString([]string{"user", "system", "developer", "assistant"}, role.Str):
		return invalidValue(at+".role", role.Str, "assistant", "system", "developer", "user")
	}
	c := m.Get("content")
	switch {
	case !c.Exists() || c.Type == gjson.Null:
		return missingParam(at + ".content")
	case c.Type == gjson.String:
		return nil
	case !c.IsArray():
		return invalidType(at+".content", "one of a string or array of input content items", c)
	}
	allowed := []string{"input_text", "input_image", "input_file"}
	if role.Str == "assistant" {
		allowed = []string{"output_text", "refusal"}
	}
	for j, part := range c.Array() {
		pat := fmt.Sprintf("%s.content[%d]", at, j)
		typ := part.Get("type")
		switch {
		case !part.IsObject():
			return invalidType(pat, "an object", part)
		case !typ.Exists():
			return missingParam(pat + ".type")
		case !hasString(allowed, typ.Str):
			return invalidValue(pat+".type", typ.Str, allowed...)
		}
		need := map[string]string{"input_text": "text", "output_text": "text", "refusal": "refusal"}[typ.Str]
		if v := part.Get(need); need != "" && v.Type != gjson.String {
			if !v.Exists() || v.Type == gjson.Null {
				return missingParam(pat + "." + need)
			}
			return invalidType(pat+"."+need, "a string", v)
		}
		if typ.Str == "input_image" && !part.Get("image_url").Exists() && !part.Get("file_id").Exists() {
			return missingParam(pat + ".image_url")
		}
		if typ.Str == "input_file" && !part.Get("file_id").Exists() && !part.Get("file_data").Exists() && !part.Get("file_url").Exists() {
			return missingParam(pat + ".file_id")
		}
	}
	return nil
}

// responsesToolsCheck: each tool has a type, a function tool a name, and a
// tool_choice naming a function names one of them.
func responsesToolsCheck(req gjson.Result) *respInvalid {
	tools := req.Get("tools")
	if tools.Exists() && tools.Type != gjson.Null && !tools.IsArray() {
		return invalidType("tools", "an array", tools)
	}
	names := map[string]bool{}
	for i, t := range tools.Array() {
		at := fmt.Sprintf("tools[%d]", i)
		typ := t.Get("type")
		switch {
		case !t.IsObject():
			return invalidType(at, "an object", t)
		case !typ.Exists() || typ.Str == "":
			return missingParam(at + ".type")
		case typ.Str != "function":
			continue // a hosted or custom tool
		}
		name := t.Get("name")
		switch {
		case !name.Exists() || name.Type == gjson.Null:
			return missingParam(at + ".name")
		case name.Type != gjson.String:
			return invalidType(at+".name", "a string", name)
		case name.Str == "":
			return &respInvalid{fmt.Sprintf("Invalid '%s.name': empty string. Expected a string with minimum length 1, but got an empty string instead.", at), at + ".name", "empty_string"}
		case !toolNamePattern.MatchString(name.Str):
			return &respInvalid{fmt.Sprintf("Invalid '%s.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.", at), at + ".name", "invalid_value"}
		}
		if p := t.Get("parameters"); p.Exists() && p.Type != gjson.Null && !p.IsObject() {
			return invalidType(at+".parameters", "an object", p)
		}
		names[name.Str] = true
	}
	switch tc := req.Get("tool_choice"); {
	case !tc.Exists() || tc.Type == gjson.Null:
	case tc.Type == gjson.String:
		if !hasString([]string{"none", "auto", "required"}, tc.Str) {
			return invalidValue("tool_choice", tc.Str, "none", "auto", "required")
		}
	case !tc.IsObject():
		return invalidType("tool_choice", "one of a string or object", tc)
	case tc.Get("type").Str == "function":
		if !tc.Get("name").Exists() {
			return missingParam("tool_choice.name")
		}
		if !names[tc.Get("name").Str] {
			return &respInvalid{"Tool choice 'function' not found in 'tools' parameter.", "tool_choice", ""}
		}
	}
	return nil
}

// responsesInput counts the prompt: words of the instructions, of the input
// string or of every message's text, and of function call outputs.
func responsesInput(req gjson.Result) int {
	n := words(req.Get("instructions").String())
	in := req.Get("input")
	if in.Type == gjson.String {
		return n + words(in.Str)
	}
	text := func(c gjson.Result) {
		if c.Type == gjson.String {
			n += words(c.Str)
			return
		}
		c.ForEach(func(_, part gjson.Result) bool { n += words(part.Get("text").Str); return true })
	}
	in.ForEach(func(_, it gjson.Result) bool {
		switch it.Get("type").Str {
		case "", "message":
			text(it.Get("content"))
		case "function_call_output":
			text(it.Get("output"))
		}
		return true
	})
	return n
}

// responsesWantsTool: the last user message (with no function output
// after it) asks for the weather, or tool_choice demands a call.
func responsesWantsTool(req gjson.Result) bool {
	choice := req.Get("tool_choice")
	if choice.Str == "none" {
		return false
	}
	if choice.Str == "required" || choice.Get("type").Str == "function" {
		return true
	}
	in := req.Get("input")
	if in.Type == gjson.String {
		return mentionsWeather(in.Str)
	}
	items := in.Array()
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		if it.Get("type").Str == "function_call_output" {
			return false
		}
		if t := it.Get("type").Str; (t == "" || t == "message") && it.Get("role").Str == "user" {
			var b strings.Builder
			if c := it.Get("content"); c.Type == gjson.String {
				b.WriteString(c.Str)
			} else {
				c.ForEach(func(_, part gjson.Result) bool { b.WriteString(" " + part.Get("text").Str); return true })
			}
			return mentionsWeather(b.String())
		}
	}
	return false
}

// respAnswer is one answer, for the body and for the stream.
type respAnswer struct {
	req                gjson.Result
	id, model          string
	created            int64
	itemID             string // msg_… or fc_…
	text               string
	callID, name, args string // a function call when name != ""
	status             string // completed | incomplete
	input, output      int
}

func (p *Provider) responsesAnswer(req gjson.Result) *respAnswer {
	model := req.Get("model").Str
	if alias, ok := p.opts.ModelAlias[model]; ok {
		model = alias
	}
	a := &respAnswer{req: req, id: fakeID("resp_"), model: model, created: time.Now().Unix(),
		status: "completed", input: responsesInput(req)}
	var functions []gjson.Result
	req.Get("tools").ForEach(func(_, t gjson.Result) bool {
		if t.Get("type").Str == "function" {
			functions = append(functions, t)
		}
		return true
	})
	if len(functions) > 0 && responsesWantsTool(req) {
		tool := functions[0]
		for _, t := range functions {
			if t.Get("name").Str == req.Get("tool_choice.name").Str {
				tool = t
			}
		}
		a.itemID, a.callID, a.name, a.args = fakeID("fc_"), fakeID("call_"), tool.Get("name").Str, `{"city":"Paris"}`
		a.output = words(a.name + " " + a.args)
		return a
	}
	a.itemID, a.text = fakeID("msg_"), p.opts.Reply
	if limit := req.Get("max_output_tokens"); limit.Exists() && words(a.text) > int(limit.Int()) {
		a.text, a.status = firstWords(a.text, int(limit.Int())), "incomplete"
	}
	a.output = words(a.text)
	return a
}

// or is the request's value of key, or def when absent or null.
func (a *respAnswer) or(key string, def any) any {
	if v := a.req.Get(key); v.Exists() && v.Type != gjson.Null {
		return v.Value()
	}
	return def
}

// tools echoes the request's tools with the defaults OpenAI fills in.
func (a *respAnswer) tools() []obj {
	out := []obj{}
	a.req.Get("tools").ForEach(func(_, t gjson.Result) bool {
		o, _ := t.Value().(map[string]any)
		if o["type"] == "function" {
			for k, v := range map[string]any{"description": nil, "parameters": nil, "strict": true} {
				if _, ok := o[k]; !ok {
					o[k] = v
				}
			}
		}
		out = append(out, o)
		return true
	})
	return out
}

// item is the output item: in progress (as output_item.added carries it)
// or done.
func (a *respAnswer) item(done bool) obj {
	status := "in_progress"
	if done {
		status = a.status
	}
	if a.name != "" {
		args := ""
		if done {
			args = a.args
		}
		return obj{"type": "function_call", "id": a.itemID, "status": status, "arguments": args, "call_id": a.callID, "name": a.name}
	}
	content := []obj{}
	if done {
		content = append(content, outputText(a.text))
	}
	return obj{"type": "message", "id": a.itemID, "status": status, "role": "assistant", "content": content}
}

func outputText(text string) obj {
	return obj{"type": "output_text", "annotations": []obj{}, "logprobs": []obj{}, "text": text}
}

// response is the Response object: in progress (response.created,
// response.in_progress) or final, with the output and the usage.
func (a *respAnswer) response(final bool) obj {
	reasoning := obj{"effort": nil, "summary": nil}
	if r := a.req.Get("reasoning"); r.IsObject() {
		reasoning["effort"], reasoning["summary"] = r.Get("effort").Value(), r.Get("summary").Value()
	}
	text := obj{"format": obj{"type": "text"}, "verbosity": "medium"}
	if t := a.req.Get("text"); t.IsObject() {
		for k, v := range t.Value().(map[string]any) {
			text[k] = v
		}
	}
	resp := obj{
		"id": a.id, "object": "response", "created_at": a.created, "status": "in_progress", "background": false,
		"completed_at": nil, "error": nil, "incomplete_details": nil, "instructions": a.or("instructions", nil),
		"max_output_tokens": a.or("max_output_tokens", nil), "max_tool_calls": a.or("max_tool_calls", nil),
		"model": a.model, "output": []obj{}, "parallel_tool_calls": a.or("parallel_tool_calls", true),
		"previous_response_id": a.or("previous_response_id", nil), "prompt_cache_key": a.or("prompt_cache_key", nil),
		"prompt_cache_retention": a.or("prompt_cache_retention", nil), "reasoning": reasoning,
		"safety_identifier": a.or("safety_identifier", nil), "service_tier": "default", "store": a.or("store", true),
		"temperature": a.or("temperature", 1.0), "text": text, "tool_choice": a.or("tool_choice", "auto"),
		"tools": a.tools(), "top_logprobs": a.or("top_logprobs", 0), "top_p": a.or("top_p", 1.0),
		"truncation": a.or("truncation", "disabled"), "usage": nil, "user": a.or("user", nil),
		"metadata": a.or("metadata", obj{}), "billing": obj{"payer": "developer"},
		"access_programs": obj{"cyber": "standard"},
	}
	if !final {
		return resp
	}
	resp["status"], resp["output"] = a.status, []obj{a.item(true)}
	if a.status == "completed" {
		resp["completed_at"] = time.Now().Unix()
	} else {
		resp["incomplete_details"] = obj{"reason": "max_output_tokens"}
	}
	resp["usage"] = obj{"input_tokens": a.input, "input_tokens_details": obj{"cached_tokens": 0},
		"output_tokens": a.output, "output_tokens_details": obj{"reasoning_tokens": 0}, "total_tokens": a.input + a.output}
	return resp
}

// events are the stream's payloads, each with its type and sequence number.
func (a *respAnswer) events() []string {
	var out []string
	add := func(e obj) {
		e["sequence_number"] = len(out)
		out = append(out, string(typeFirst(e)))
	}
	add(obj{"type": "response.created", "response": a.response(false)})
	add(obj{"type": "response.in_progress", "response": a.response(false)})
	add(obj{"type": "response.output_item.added", "output_index": 0, "item": a.item(false)})
	at := func(typ string) obj { return obj{"type": typ, "item_id": a.itemID, "output_index": 0} }
	if a.name != "" {
		for _, f := range cutFragments(a.args, 3) {
			e := at("response.function_call_arguments.delta")
			e["delta"] = f
			add(e)
		}
		e := at("response.function_call_arguments.done")
		e["arguments"] = a.args
		add(e)
	} else {
		part := at("response.content_part.added")
		part["content_index"], part["part"] = 0, outputText("")
		add(part)
		for _, w := range chunkWords(a.text) {
			e := at("response.output_text.delta")
			e["content_index"], e["delta"], e["logprobs"] = 0, w, []obj{}
			add(e)
		}
		e := at("response.output_text.done")
		e["content_index"], e["text"], e["logprobs"] = 0, a.text, []obj{}
		add(e)
		part = at("response.content_part.done")
		part["content_index"], part["part"] = 0, outputText(a.text)
		add(part)
	}
	add(obj{"type": "response.output_item.done", "output_index": 0, "item": a.item(true)})
	final := "response.completed"
	if a.status == "incomplete" {
		final = "response.incomplete"
	}
	add(obj{"type": final, "response": a.response(true)})
	return out
}

// responses answers POST /v1/responses.
func (p *Provider) responses(w http.ResponseWriter, r *http.Request, body []byte) {
	if bad := responsesCheck(body); bad != nil {
		code := "invalid_request_error"
		writeJSON(w, 400, obj{"error": obj{"message": bad.msg, "type": code, "param": orNull(bad.param), "code": orNull(bad.code)}})
		return
	}
	req := gjson.ParseBytes(body)
	a := p.responsesAnswer(req)
	if req.Get("stream").Bool() {
		p.play(w, r, &Reply{Events: a.events()})
		return
	}
	writeJSON(w, 200, a.response(true))
}

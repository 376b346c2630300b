package fakes

// The "anthropic" flavor: Anthropic's Messages API (providers.md §7).

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

// thought is the fakes' thinking text (an Anthropic thinking block, a
// Gemini thought part); its words are the thinking tokens.
const thoughtText = "The user asks a simple sum, so I answer it directly."

var fakeSeq atomic.Int64

// fakeID is a unique id with a provider's prefix (msg_, req_, toolu_).
func fakeID(prefix string) string { return fmt.Sprintf("%s01Fake%017d", prefix, fakeSeq.Add(1)) }

// signature is a deterministic stand-in for a provider's thought signature.
func signThought(text string) string {
	sum := sha256.Sum256([]byte("signed:" + text))
	return base64.StdEncoding.EncodeToString(append([]byte{0x12, 0xaa, 0x01}, sum[:]...))
}

// fragments cuts s into n pieces or fewer, each non-empty (n ≥ 2 when len(s) ≥ 2).
func cutFragments(s string, n int) []string {
	size := max(1, (len(s)+n-1)/n)
	var out []string
	for len(s) > size {
		out = append(out, s[:size])
		s = s[size:]
	}
	return append(out, s)
}

// chunkWords is s cut into words, each after the first with its leading space.
func chunkWords(s string) []string {
	ws := strings.Fields(s)
	for i := 1; i < len(ws); i++ {
		ws[i] = " " + ws[i]
	}
	return ws
}

// firstWords keeps the first n words of s (n ≥ 0).
func firstWords(s string, n int) string {
	ws := strings.Fields(s)
	return strings.Join(ws[:min(n, len(ws))], " ")
}

// anthropicError answers in Anthropic's error shape.
func (p *Provider) anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	id := fakeID("req_")
	w.Header().Set("request-id", id)
	writeJSON(w, status, obj{"type": "error", "error": obj{"type": typ, "message": msg}, "request_id": id})
}

func (p *Provider) anthropic(w http.ResponseWriter, r *http.Request, body []byte) {
	count := strings.HasSuffix(r.URL.Path, "/v1/messages/count_tokens")
	if r.Method != http.MethodPost || !(count || strings.HasSuffix(r.URL.Path, "/v1/messages")) {
		p.anthropicError(w, 404, "not_found_error", "Not Found")
		return
	}
	if !p.authorized(r) {
		msg := "invalid x-api-key"
		if r.Header.Get("x-api-key") == "" {
			msg = "x-api-key header is required"
		}
		p.anthropicError(w, 401, "authentication_error", msg)
		return
	}
	switch v := r.Header.Get("anthropic-version"); v {
	case "2023-06-01", "2023-01-01":
	case "":
		p.anthropicError(w, 400, "invalid_request_error", "anthropic-version: header is required")
		return
	default:
		p.anthropicError(w, 400, "invalid_request_error", fmt.Sprintf("anthropic-version: %q is not a valid version", v))
		return
	}
	if msg := anthropicCheck(body, count); msg != "" {
		p.anthropicError(w, 400, "invalid_request_error", msg)
		return
	}
	req := gjson.ParseBytes(body)
	in, cached := anthropicInput(req)
	if count {
		writeJSON(w, 200, obj{"input_tokens": in + cached})
		return
	}
	a := p.anthropicAnswer(req)
	a.input, a.cached = in, cached
	h := w.Header()
	h.Set("request-id", fakeID("req_"))
	reset := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	for kind, limit := range map[string]int{"requests": 4000, "tokens": 2000000, "input-tokens": 2000000, "output-tokens": 400000} {
		used := map[string]int{"requests": p.Count(), "tokens": in + a.output, "input-tokens": in, "output-tokens": a.output}[kind]
		h.Set("anthropic-ratelimit-"+kind+"-limit", strconv.Itoa(limit))
		h.Set("anthropic-ratelimit-"+kind+"-remaining", strconv.Itoa(limit-used))
		h.Set("anthropic-ratelimit-"+kind+"-reset", reset)
	}
	if req.Get("stream").Bool() {
		p.play(w, r, &Reply{Events: a.events()})
		return
	}
	writeJSON(w, 200, a.message())
}

// anthropicInput counts the prompt: words of the system prompt and of the
// messages' text (text blocks, tool results). The prefix up to the last block
// carrying cache_control is read from the cache and not in input_tokens.
func anthropicInput(req gjson.Result) (input, cached int) {
	n := 0
	block := func(b gjson.Result) {
		switch {
		case b.Type == gjson.String:
			n += words(b.Str)
		case b.Get("type").Str == "text":
			n += words(b.Get("text").Str)
		case b.Get("type").Str == "tool_result":
			c := b.Get("content")
			if c.Type == gjson.String {
				n += words(c.Str)
			} else {
				c.ForEach(func(_, x gjson.Result) bool { n += words(x.Get("text").Str); return true })
			}
		}
		if b.Get("cache_control").Exists() {
			cached = n
		}
	}
	blocks := func(c gjson.Result) {
		if c.IsArray() {
			c.ForEach(func(_, b gjson.Result) bool { block(b); return true })
		} else {
			block(c)
		}
	}
	blocks(req.Get("system"))
	req.Get("messages").ForEach(func(_, m gjson.Result) bool { blocks(m.Get("content")); return true })
	return n - cached, cached
}

var (
	anthropicFields = stringSet("model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
		"stop_sequences", "tools", "tool_choice", "thinking", "metadata", "service_tier", "container", "mcp_servers",
		"context_management", "output_format", "output_config", "cache_control", "inference_geo")
	anthropicBlocks = []string{"text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
		"tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
		"mcp_tool_use", "mcp_tool_result", "container_upload"}
	toolIDPattern   = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	toolNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	serverToolType  = regexp.MustCompile(`^[a-z_]+_[0-9]{8}$`) // web_search_20250305
)

func stringSet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func isWholeNumber(v gjson.Result) bool { return v.Type == gjson.Number && v.Num == math.Trunc(v.Num) }

// anthropicCheck validates a Messages request as Anthropic does; "" = valid.
func anthropicCheck(body []byte, countOnly bool) string {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return "There was an error parsing the body of your request: it must be a JSON object"
	}
	req := gjson.ParseBytes(body)
	var msg string
	req.ForEach(func(k, _ gjson.Result) bool {
		if !anthropicFields[k.Str] {
			msg = k.Str + ": Extra inputs are not permitted"
		}
		return msg == ""
	})
	if msg != "" {
		return msg
	}
	switch model := req.Get("model"); {
	case !model.Exists():
		return "model: Field required"
	case model.Type != gjson.String:
		return "model: Input should be a valid string"
	case model.Str == "":
		return "model: String should have at least 1 character"
	}
	maxTokens := req.Get("max_tokens")
	switch {
	case countOnly && !maxTokens.Exists():
	case !maxTokens.Exists():
		return "max_tokens: Field required"
	case !isWholeNumber(maxTokens):
		return "max_tokens: Input should be a valid integer"
	case maxTokens.Num < 1:
		return "max_tokens: Input should be greater than or equal to 1"
	}
	msgs := req.Get("messages")
	switch {
	case !msgs.Exists():
		return "messages: Field required"
	case !msgs.IsArray():
		return "messages: Input should be a valid list"
	}
	list := msgs.Array()
	if len(list) == 0 {
		return "messages: at least one message is required"
	}
	for i, m := range list {
		if msg := anthropicMessageCheck(i, m, i == len(list)-1); msg != "" {
			return msg
		}
	}
	if list[0].Get("role").Str != "user" {
		return `messages: first message must use the "user" role`
	}
	for i, m := range list {
		if msg := toolPairing(list, i, m); msg != "" {
			return msg
		}
	}
	if msg := anthropicSystemCheck(req.Get("system")); msg != "" {
		return msg
	}
	if s := req.Get("stream"); s.Exists() && !s.IsBool() {
		return "stream: Input should be a valid boolean"
	}
	if t := req.Get("temperature"); t.Exists() {
		switch {
		case t.Type != gjson.Number:
			return "temperature: Input should be a valid number"
		case t.Num < 0:
			return "temperature: Input should be greater than or equal to 0"
		case t.Num > 1:
			return "temperature: Input should be less than or equal to 1"
		}
	}
	if s := req.Get("stop_sequences"); s.Exists() {
		if !s.IsArray() {
			return "stop_sequences: Input should be a valid list"
		}
		for i, x := range s.Array() {
			if x.Type != gjson.String {
				return fmt.Sprintf("stop_sequences.%d: Input should be a valid string", i)
			}
		}
	}
	if msg := anthropicToolsCheck(req); msg != "" {
		return msg
	}
	switch th := req.Get("thinking"); th.Get("type").Str {
	case "":
		if th.Exists() {
			return "thinking: Unable to extract tag using discriminator 'type'"
		}
	case "disabled", "adaptive":
	case "enabled":
		budget := th.Get("budget_tokens")
		switch {
		case !budget.Exists():
			return "thinking.enabled.budget_tokens: Field required"
		case !isWholeNumber(budget):
			return "thinking.enabled.budget_tokens: Input should be a valid integer"
		case budget.Num < 1024:
			return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
		case !countOnly && budget.Num >= maxTokens.Num:
			return "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
		}
		if t := req.Get("temperature"); t.Exists() && t.Num != 1 {
			return "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"
		}
	default:
		return fmt.Sprintf("thinking: Input tag '%s' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'", th.Get("type").Str)
	}
	return ""
}

func anthropicMessageCheck(i int, m gjson.Result, last bool) string {
	if !m.IsObject() {
		return fmt.Sprintf("messages.%d: Input should be a valid dictionary", i)
	}
	role := m.Get("role")
	switch {
	case !role.Exists():
		return fmt.Sprintf("messages.%d.role: Field required", i)
	case role.Str != "user" && role.Str != "assistant":
		return fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i)
	}
	empty := fmt.Sprintf("messages.%d: all messages must have non-empty content except for the optional final assistant message", i)
	c := m.Get("content")
	switch {
	case !c.Exists():
		return fmt.Sprintf("messages.%d.content: Field required", i)
	case c.Type == gjson.String:
		if strings.TrimSpace(c.Str) == "" && !(last && role.Str == "assistant") {
			return empty
		}
		return ""
	case !c.IsArray():
		return fmt.Sprintf("messages.%d.content: Input should be a valid list", i)
	case len(c.Array()) == 0 && !(last && role.Str == "assistant"):
		return empty
	}
	for j, b := range c.Array() {
		at := fmt.Sprintf("messages.%d.content.%d", i, j)
		typ := b.Get("type").Str
		required := map[string][]string{
			"text": {"text"}, "image": {"source"}, "document": {"source"}, "thinking": {"thinking", "signature"},
			"redacted_thinking": {"data"}, "tool_use": {"id", "name", "input"}, "tool_result": {"tool_use_id"},
		}[typ]
		switch {
		case !b.IsObject():
			return at + ": Input should be a valid dictionary"
		case typ == "":
			return at + ": Unable to extract tag using discriminator 'type'"
		case !hasString(anthropicBlocks, typ):
			return fmt.Sprintf("%s: Input tag '%s' found using 'type' does not match any of the expected tags: '%s'", at, typ, strings.Join(anthropicBlocks, "', '"))
		}
		for _, f := range required {
			if !b.Get(f).Exists() {
				return fmt.Sprintf("%s.%s.%s: Field required", at, typ, f)
			}
		}
		switch typ {
		case "text":
			if b.Get("text").Type != gjson.String {
				return at + ".text.text: Input should be a valid string"
			}
			if strings.TrimSpace(b.Get("text").Str) == "" {
				return "messages: text content blocks must be non-empty"
			}
		case "tool_use":
			if !toolIDPattern.MatchString(b.Get("id").Str) {
				return at + ".tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
			}
			if !b.Get("input").IsObject() {
				return at + ".tool_use.input: Input should be a valid dictionary"
			}
			if role.Str != "assistant" {
				return at + ": tool_use blocks can only be in assistant messages"
			}
		case "tool_result":
			if role.Str != "user" {
				return at + ": tool_result blocks can only be in user messages"
			}
		}
	}
	return ""
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func blockIDs(m gjson.Result, typ, field string) []string {
	var ids []string
	m.Get("content").ForEach(func(_, b gjson.Result) bool {
		if b.Get("type").Str == typ {
			ids = append(ids, b.Get(field).Str)
		}
		return true
	})
	return ids
}

// toolPairing: each tool_result answers a tool_use of the message before,
// and each tool_use is answered in the message after.
func toolPairing(list []gjson.Result, i int, m gjson.Result) string {
	var before []string
	if i > 0 && list[i-1].Get("role").Str == "assistant" {
		before = blockIDs(list[i-1], "tool_use", "id")
	}
	for j, b := range m.Get("content").Array() {
		if id := b.Get("tool_use_id").Str; b.Get("type").Str == "tool_result" && !hasString(before, id) {
			return fmt.Sprintf("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", i, j, id)
		}
	}
	if uses := blockIDs(m, "tool_use", "id"); len(uses) > 0 && i+1 < len(list) {
		answered := blockIDs(list[i+1], "tool_result", "tool_use_id")
		var missing []string
		for _, id := range uses {
			if !hasString(answered, id) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i+1, strings.Join(missing, ", "))
		}
	}
	return ""
}

func anthropicSystemCheck(s gjson.Result) string {
	switch {
	case !s.Exists() || s.Type == gjson.String:
		return ""
	case !s.IsArray():
		return "system: Input should be a valid list"
	}
	for i, b := range s.Array() {
		if b.Get("type").Str != "text" {
			return fmt.Sprintf("system.%d.type: Input should be 'text'", i)
		}
		if b.Get("text").Type != gjson.String {
			return fmt.Sprintf("system.%d.text: Field required", i)
		}
	}
	return ""
}

func anthropicToolsCheck(req gjson.Result) string {
	tools := req.Get("tools")
	if !tools.Exists() {
		return ""
	}
	if !tools.IsArray() {
		return "tools: Input should be a valid list"
	}
	seen := map[string]bool{}
	for i, t := range tools.Array() {
		if typ := t.Get("type").Str; serverToolType.MatchString(typ) {
			continue // a server tool (web_search_20250305, …)
		} else if typ != "" && typ != "custom" {
			return fmt.Sprintf("tools.%d: Input tag '%s' found using 'type' does not match any of the expected tags: 'custom', or a versioned server tool type", i, typ)
		}
		name := t.Get("name")
		switch {
		case !name.Exists():
			return fmt.Sprintf("tools.%d.custom.name: Field required", i)
		case !toolNamePattern.MatchString(name.Str):
			return fmt.Sprintf("tools.%d.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", i)
		case !t.Get("input_schema").Exists():
			return fmt.Sprintf("tools.%d.custom.input_schema: Field required", i)
		case seen[name.Str]:
			return "tools: Tool names must be unique."
		}
		seen[name.Str] = true
	}
	switch tc := req.Get("tool_choice"); tc.Get("type").Str {
	case "", "auto", "any", "none":
	case "tool":
		if !seen[tc.Get("name").Str] {
			return "tool_choice: Tool '" + tc.Get("name").Str + "' not found in 'tools'"
		}
	default:
		return fmt.Sprintf("tool_choice: Input tag '%s' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'", tc.Get("type").Str)
	}
	return ""
}

// lastUserText is the text of the last user turn.
func lastUserText(msgs gjson.Result, userRole string) string {
	list := msgs.Array()
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Get("role").Str != userRole && !(userRole == "user" && list[i].Get("role").Str == "") {
			continue
		}
		var b strings.Builder
		for _, f := range []string{"content", "parts"} {
			c := list[i].Get(f)
			if c.Type == gjson.String {
				b.WriteString(c.Str)
			}
			c.ForEach(func(_, x gjson.Result) bool { b.WriteString(" " + x.Get("text").Str); return true })
		}
		return b.String()
	}
	return ""
}

func mentionsWeather(s string) bool { return strings.Contains(strings.ToLower(s), "weather") }

// anthropicReply is one answer, for the body and for the stream.
type anthropicReply struct {
	id, model        string
	thinking         bool
	text             string
	toolID, toolName string
	toolInput        string // JSON
	stopReason       string
	stopSequence     any
	input, cached    int
	output           int
}

func (p *Provider) anthropicAnswer(req gjson.Result) *anthropicReply {
	model := req.Get("model").Str
	if alias, ok := p.opts.ModelAlias[model]; ok {
		model = alias
	}
	a := &anthropicReply{id: fakeID("msg_"), model: model, stopReason: "end_turn"}
	switch req.Get("thinking.type").Str {
	case "enabled", "adaptive":
		a.thinking = true
		a.output = words(thoughtText)
	}
	tools, choice := req.Get("tools").Array(), req.Get("tool_choice")
	if len(tools) > 0 && choice.Get("type").Str != "none" &&
		(mentionsWeather(lastUserText(req.Get("messages"), "user")) || choice.Get("type").Str == "any" || choice.Get("type").Str == "tool") {
		tool := tools[0]
		for _, t := range tools {
			if t.Get("name").Str == choice.Get("name").Str {
				tool = t
			}
		}
		a.toolID, a.toolName, a.toolInput, a.stopReason = fakeID("toolu_"), tool.Get("name").Str, "{}", "tool_use"
		if tool.Get("input_schema.properties.city").Exists() {
			a.toolInput = `{"city":"Paris"}`
		}
		a.output += words(a.toolName + " " + a.toolInput)
		return a
	}
	a.text = p.opts.Reply
	cut := len(a.text)
	for _, s := range req.Get("stop_sequences").Array() {
		if i := strings.Index(a.text, s.Str); s.Str != "" && i >= 0 && i < cut {
			cut, a.stopReason, a.stopSequence = i, "stop_sequence", s.Str
		}
	}
	a.text = a.text[:cut]
	if room := int(req.Get("max_tokens").Int()) - a.output; words(a.text) > room {
		a.text, a.stopReason, a.stopSequence = firstWords(a.text, max(room, 0)), "max_tokens", nil
	}
	a.output += words(a.text)
	return a
}

func (a *anthropicReply) usage(output int) obj {
	return obj{"input_tokens": a.input, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": a.cached}
}

func (a *anthropicReply) message() obj {
	var content []obj
	if a.thinking {
		content = append(content, obj{"type": "thinking", "thinking": thoughtText, "signature": signThought(thoughtText)})
	}
	if a.toolID != "" {
		content = append(content, obj{"type": "tool_use", "id": a.toolID, "name": a.toolName, "input": json.RawMessage(a.toolInput)})
	} else {
		content = append(content, obj{"type": "text", "text": a.text})
	}
	return obj{"id": a.id, "type": "message", "role": "assistant", "model": a.model, "content": content,
		"stop_reason": a.stopReason, "stop_sequence": a.stopSequence, "usage": a.usage(a.output)}
}

// events are the stream's event payloads; the frame names each by its type.
func (a *anthropicReply) events() []string {
	var out []string
	add := func(v obj) { out = append(out, string(typeFirst(v))) }
	add(obj{"type": "message_start", "message": obj{"id": a.id, "type": "message", "role": "assistant", "model": a.model,
		"content": []obj{}, "stop_reason": nil, "stop_sequence": nil, "usage": a.usage(1)}})
	index := 0
	block := func(start obj, deltas ...obj) {
		add(obj{"type": "content_block_start", "index": index, "content_block": start})
		if index == 0 {
			add(obj{"type": "ping"})
		}
		for _, d := range deltas {
			add(obj{"type": "content_block_delta", "index": index, "delta": d})
		}
		add(obj{"type": "content_block_stop", "index": index})
		index++
	}
	if a.thinking {
		var deltas []obj
		for _, w := range chunkWords(thoughtText) {
			deltas = append(deltas, obj{"type": "thinking_delta", "thinking": w})
		}
		block(obj{"type": "thinking", "thinking": ""}, append(deltas, obj{"type": "signature_delta", "signature": signThought(thoughtText)})...)
	}
	if a.toolID != "" {
		deltas := []obj{{"type": "input_json_delta", "partial_json": ""}}
		for _, f := range cutFragments(a.toolInput, 3) {
			deltas = append(deltas, obj{"type": "input_json_delta", "partial_json": f})
		}
		block(obj{"type": "tool_use", "id": a.toolID, "name": a.toolName, "input": obj{}}, deltas...)
	} else {
		var deltas []obj
		for _, w := range chunkWords(a.text) {
			deltas = append(deltas, obj{"type": "text_delta", "text": w})
		}
		block(obj{"type": "text", "text": ""}, deltas...)
	}
	add(obj{"type": "message_delta", "delta": obj{"stop_reason": a.stopReason, "stop_sequence": a.stopSequence},
		"usage": obj{"output_tokens": a.output}})
	add(obj{"type": "message_stop"})
	return out
}

// anthropicFrame is one SSE event as Anthropic sends it: named by the
// payload's type ("event: content_block_delta\ndata: {…}\n\n").
func anthropicFrame(e string) string {
	if typ := gjson.Get(e, "type"); typ.Type == gjson.String && gjson.Valid(e) {
		return "event: " + typ.Str + "\ndata: " + e + "\n\n"
	}
	return "data: " + e + "\n\n"
}

// typeFirst marshals v with each object's "type" key first, as Anthropic's
// events come ({"type":"content_block_delta","index":0,"delta":{"type":…}}).
func typeFirst(v any) []byte {
	var b bytes.Buffer
	switch x := v.(type) {
	case obj:
		keys := make([]string, 0, len(x))
		for k := range x {
			if k != "type" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if _, ok := x["type"]; ok {
			keys = append([]string{"type"}, keys...)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			name, _ := json.Marshal(k)
			b.Write(name)
			b.WriteByte(':')
			b.Write(typeFirst(x[k]))
		}
		b.WriteByte('}')
	case []obj:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(typeFirst(e))
		}
		b.WriteByte(']')
	default:
		j, _ := json.Marshal(v)
		b.Write(j)
	}
	return b.Bytes()
}

package fakes

// The "gemini-native" flavor: generateContent of the Gemini API and of
// Vertex AI's publisher models (providers.md §4.2, §5).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/tidwall/gjson"
)

var (
	// /v1beta/models/{model}:{method}
	geminiAPIPath = regexp.MustCompile(`^/(v1|v1beta|v1alpha)/models/([^/:]+):([A-Za-z]+)$`)
	// /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}
	vertexModelPath = regexp.MustCompile(`^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):([A-Za-z]+)$`)

	geminiFields = stringSet("contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
		"cachedContent", "labels", "model", "generateContentRequest")
	geminiPartData = []string{"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult"}
	geminiMimes    = stringSet("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
)

// googleError answers in Google's error shape (not array-wrapped).
func (p *Provider) googleError(w http.ResponseWriter, status int, code, msg string, details ...obj) {
	e := obj{"code": status, "message": msg, "status": code}
	if len(details) > 0 {
		e["details"] = details
	}
	writeJSON(w, status, obj{"error": e})
}

// snake is a proto field's JSON name in snake case (thinkingConfig → thinking_config).
func protoSnake(s string) string {
	var b strings.Builder
	for _, c := range s {
		if unicode.IsUpper(c) {
			b.WriteByte('_')
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// gget reads a dotted camelCase path, each step under its camelCase or
// snake_case name, as Google's JSON parsers accept both.
func gget(r gjson.Result, path string) gjson.Result {
	for _, k := range strings.Split(path, ".") {
		v := r.Get(k)
		if !v.Exists() {
			v = r.Get(protoSnake(k))
		}
		r = v
	}
	return r
}

func (p *Provider) geminiNative(w http.ResponseWriter, r *http.Request, body []byte) {
	var model, method string
	vertex := false
	if m := geminiAPIPath.FindStringSubmatch(r.URL.Path); m != nil {
		model, method = m[2], m[3]
	} else if m := vertexModelPath.FindStringSubmatch(r.URL.Path); m != nil {
		model, method, vertex = m[4], m[5], true
	} else {
		p.googleError(w, 404, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	if !p.geminiAuthorized(w, r, vertex) {
		return
	}
	if r.Method != http.MethodPost {
		p.googleError(w, 404, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	switch method {
	case "generateContent", "streamGenerateContent", "countTokens":
	default:
		p.googleError(w, 404, "NOT_FOUND", fmt.Sprintf("models/%s is not found for API version %s, or is not supported for %s.", model, strings.SplitN(r.URL.Path, "/", 3)[1], method))
		return
	}
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		p.googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token.")
		return
	}
	req := gjson.ParseBytes(body)
	if method == "countTokens" && gget(req, "generateContentRequest").Exists() {
		req = gget(req, "generateContentRequest")
	}
	if msg := geminiCheck(req, vertex); msg != "" {
		p.googleError(w, 400, "INVALID_ARGUMENT", msg)
		return
	}
	prompt := geminiPrompt(req)
	if method == "countTokens" {
		writeJSON(w, 200, obj{"totalTokens": prompt, "promptTokensDetails": []obj{{"modality": "TEXT", "tokenCount": prompt}}})
		return
	}
	if alias, ok := p.opts.ModelAlias[model]; ok {
		model = alias
	}
	g := p.geminiAnswer(req, model, vertex)
	g.prompt = prompt
	if method == "generateContent" {
		writeJSON(w, 200, g.whole())
		return
	}
	chunks := g.chunks()
	if r.URL.Query().Get("alt") == "sse" {
		p.play(w, r, &Reply{Events: chunks})
		return
	}
	// Without alt=sse the stream is one JSON array, written element by element.
	raw := make([]string, len(chunks))
	for i, c := range chunks {
		raw[i] = ",\r\n" + c
	}
	raw[0] = "[" + chunks[0]
	raw = append(raw, "]")
	p.play(w, r, &Reply{Header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}}, Raw: raw})
}

// geminiAuthorized checks the Gemini API key (x-goog-api-key or ?key=)
// or, on Vertex paths, the Bearer token, and answers the refusal.
func (p *Provider) geminiAuthorized(w http.ResponseWriter, r *http.Request, vertex bool) bool {
	if vertex || len(p.opts.Keys) == 0 {
		if p.authorized(r) {
			return true
		}
		p.googleError(w, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
		return false
	}
	header, query := r.Header.Get("x-goog-api-key"), r.URL.Query().Get("key")
	for name, want := range p.opts.Keys {
		if got := r.Header.Values(name); len(got) == 1 && got[0] == want {
			return true
		}
		if strings.EqualFold(name, "x-goog-api-key") && header == "" && query == want {
			return true
		}
	}
	if header == "" && query == "" {
		p.googleError(w, 403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
		return false
	}
	p.googleError(w, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
		obj{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
			"metadata": obj{"service": "generativelanguage.googleapis.com"}})
	return false
}

// geminiCheck validates a GenerateContentRequest as Google does; "" = valid.
func geminiCheck(req gjson.Result, vertex bool) string {
	var msg string
	req.ForEach(func(k, _ gjson.Result) bool {
		if !geminiFields[k.Str] && !geminiFields[protoCamel(k.Str)] {
			msg = fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", k.Str)
		}
		return msg == ""
	})
	if msg != "" {
		return msg
	}
	contents := gget(req, "contents")
	if contents.Exists() && !contents.IsArray() {
		return `Invalid JSON payload received. Unknown name "contents": Proto field is not repeating, cannot start list.`
	}
	list := contents.Array()
	if len(list) == 0 {
		return "* GenerateContentRequest.contents: contents is not specified\n"
	}
	calls := make([]int, len(list))     // functionCall parts per turn
	responses := make([]int, len(list)) // functionResponse parts per turn
	for i, c := range list {
		switch role := c.Get("role").Str; {
		case role == "user", role == "model":
		case role == "" && !vertex:
		default:
			return "Please use a valid role: user, model."
		}
		parts := c.Get("parts")
		if len(parts.Array()) == 0 {
			return fmt.Sprintf("* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.\n", i)
		}
		for j, part := range parts.Array() {
			n := 0
			for _, f := range geminiPartData {
				if gget(part, f).Exists() {
					n++
				}
			}
			if n != 1 {
				return fmt.Sprintf("* GenerateContentRequest.contents[%d].parts[%d].data: required oneof field 'data' must have one initialized field\n", i, j)
			}
			for f, count := range map[string][]int{"functionCall": calls, "functionResponse": responses} {
				if v := gget(part, f); v.Exists() {
					count[i]++
					if v.Get("name").Str == "" {
						return fmt.Sprintf("* GenerateContentRequest.contents[%d].parts[%d].%s.name: Name cannot be empty.\n", i, j, protoSnake(f))
					}
				}
			}
		}
	}
	for i, c := range list {
		if responses[i] > 0 {
			if i == 0 || calls[i-1] == 0 {
				return "Please ensure that function response turn comes immediately after a function call turn."
			}
			if responses[i] != calls[i-1] {
				return "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."
			}
		}
		if calls[i] > 0 && (i == 0 || list[i-1].Get("role").Str == "model" || c.Get("role").Str != "model") {
			return "Please ensure that function call turn comes immediately after a user turn or after a function response turn."
		}
	}
	if mime := gget(req, "generationConfig.responseMimeType"); mime.Exists() && !geminiMimes[mime.Str] {
		return "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are `text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n"
	}
	if t := gget(req, "generationConfig.temperature"); t.Exists() && (t.Type != gjson.Number || t.Num < 0 || t.Num > 2) {
		return "* GenerateContentRequest.generation_config.temperature: temperature must be between 0 and 2\n"
	}
	for i, t := range gget(req, "tools").Array() {
		for j, d := range gget(t, "functionDeclarations").Array() {
			if d.Get("name").Str == "" {
				return fmt.Sprintf("* GenerateContentRequest.tools[%d].function_declarations[%d].name: Name cannot be empty.\n", i, j)
			}
		}
	}
	return ""
}

// camel is snake's inverse (system_instruction → systemInstruction).
func protoCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// geminiPrompt counts the words of the text parts of the contents and of
// the system instruction.
func geminiPrompt(req gjson.Result) int {
	n := 0
	count := func(c gjson.Result) {
		c.Get("parts").ForEach(func(_, part gjson.Result) bool { n += words(part.Get("text").Str); return true })
	}
	gget(req, "contents").ForEach(func(_, c gjson.Result) bool { count(c); return true })
	count(gget(req, "systemInstruction"))
	return n
}

// geminiReply is one answer, for the body and for the stream.
type geminiReply struct {
	model, id, created string
	vertex             bool
	showThoughts       bool
	thoughts           int // thinking tokens
	text               string
	call               obj // a functionCall part, or nil
	finish             string
	prompt, candidates int
}

func (p *Provider) geminiAnswer(req gjson.Result, model string, vertex bool) *geminiReply {
	g := &geminiReply{model: model, id: fakeID("resp"), vertex: vertex, finish: "STOP",
		created: time.Now().UTC().Format(time.RFC3339Nano)}
	tc := gget(req, "generationConfig.thinkingConfig")
	g.showThoughts = gget(tc, "includeThoughts").Bool()
	if budget := gget(tc, "thinkingBudget"); g.showThoughts || (budget.Exists() && budget.Int() != 0) || gget(tc, "thinkingLevel").Exists() {
		g.thoughts = words(thoughtText)
	}
	var decls []gjson.Result
	for _, t := range gget(req, "tools").Array() {
		decls = append(decls, gget(t, "functionDeclarations").Array()...)
	}
	fc := gget(req, "toolConfig.functionCallingConfig")
	mode := strings.ToUpper(gget(fc, "mode").Str)
	if len(decls) > 0 && mode != "NONE" && (mode == "ANY" || mentionsWeather(lastUserText(gget(req, "contents"), "user"))) {
		decl := decls[0]
		if allowed := gget(fc, "allowedFunctionNames").Array(); mode == "ANY" && len(allowed) > 0 {
			for _, d := range decls {
				if d.Get("name").Str == allowed[0].Str {
					decl = d
				}
			}
		}
		args := "{}"
		if gget(decl, "parameters.properties.city").Exists() || gget(decl, "parametersJsonSchema.properties.city").Exists() {
			args = `{"city":"Paris"}`
		}
		name := decl.Get("name").Str
		g.call = obj{"functionCall": obj{"name": name, "args": json.RawMessage(args)}}
		if g.thoughts > 0 {
			g.call["thoughtSignature"] = signThought(thoughtText)
		}
		g.candidates = words(name + " " + args)
		return g
	}
	g.text = p.opts.Reply
	if gget(req, "generationConfig.responseMimeType").Str == "application/json" {
		b, _ := json.Marshal(obj{"answer": p.opts.Reply})
		g.text = string(b)
	}
	cut := len(g.text)
	for _, s := range gget(req, "generationConfig.stopSequences").Array() {
		if i := strings.Index(g.text, s.Str); s.Str != "" && i >= 0 && i < cut {
			cut = i
		}
	}
	g.text = g.text[:cut]
	if limit := int(gget(req, "generationConfig.maxOutputTokens").Int()); limit > 0 && words(g.text) > limit {
		g.text, g.finish = firstWords(g.text, limit), "MAX_TOKENS"
	}
	g.candidates = words(g.text)
	return g
}

// usage is the usageMetadata; partial chunks carry the counts so far.
func (g *geminiReply) usage(candidates, thoughts int, final bool) obj {
	u := obj{"promptTokenCount": g.prompt, "totalTokenCount": g.prompt + candidates + thoughts,
		"promptTokensDetails": []obj{{"modality": "TEXT", "tokenCount": g.prompt}}}
	if final || candidates > 0 {
		u["candidatesTokenCount"] = candidates
	}
	if final || thoughts > 0 {
		u["thoughtsTokenCount"] = thoughts
	}
	if g.vertex {
		u["trafficType"] = "ON_DEMAND"
	}
	return u
}

func (g *geminiReply) response(parts []obj, finish string, usage obj) obj {
	cand := obj{"content": obj{"role": "model", "parts": parts}, "index": 0}
	if finish != "" {
		cand["finishReason"] = finish
	}
	resp := obj{"candidates": []obj{cand}, "usageMetadata": usage, "modelVersion": g.model, "responseId": g.id}
	if g.vertex {
		resp["createTime"] = g.created
	}
	return resp
}

func (g *geminiReply) whole() obj {
	var parts []obj
	if g.showThoughts {
		parts = append(parts, obj{"text": thoughtText, "thought": true})
	}
	if g.call != nil {
		parts = append(parts, g.call)
	} else {
		parts = append(parts, obj{"text": g.text})
	}
	return g.response(parts, g.finish, g.usage(g.candidates, g.thoughts, true))
}

// chunks are the stream's responses: one per word, the last complete.
func (g *geminiReply) chunks() []string {
	var out []string
	add := func(v obj) {
		b, _ := json.Marshal(v)
		out = append(out, string(b))
	}
	thoughts := g.thoughts // hidden thinking is done before the first chunk
	if g.showThoughts {
		thoughts = 0
		for _, w := range chunkWords(thoughtText) {
			thoughts++
			add(g.response([]obj{{"text": w, "thought": true}}, "", g.usage(0, thoughts, false)))
		}
	}
	if g.call != nil {
		add(g.response([]obj{g.call}, g.finish, g.usage(g.candidates, g.thoughts, true)))
		return out
	}
	ws := chunkWords(g.text)
	if len(ws) == 0 {
		ws = []string{""}
	}
	for i, w := range ws {
		if i == len(ws)-1 {
			add(g.response([]obj{{"text": w}}, g.finish, g.usage(g.candidates, g.thoughts, true)))
		} else {
			add(g.response([]obj{{"text": w}}, "", g.usage(i+1, thoughts, false)))
		}
	}
	return out
}

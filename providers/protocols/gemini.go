package protocols

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Gemini speaks Gemini's and Vertex AI's native generateContent. The model
// and whether to stream are in the URL, never in the body.
var Gemini Upstream = geminiCodec{}

type geminiCodec struct{}

func (geminiCodec) Protocol() Protocol { return GenerateContent }

type gemRequest struct {
	Contents          []gemContent `json:"contents"`
	SystemInstruction *gemContent  `json:"systemInstruction,omitempty"`
	GenerationConfig  *gemConfig   `json:"generationConfig,omitempty"`
	Tools             []gemTool    `json:"tools,omitempty"`
	ToolConfig        *gemToolConf `json:"toolConfig,omitempty"`
}

type gemContent struct {
	Role  string    `json:"role,omitempty"`
	Parts []gemPart `json:"parts"`
}

// gemPart is one part, in requests and answers alike. Text is a pointer
// because an empty text part may still carry a thought signature.
type gemPart struct {
	Text             *string          `json:"text,omitempty"`
	Thought          bool             `json:"thought,omitempty"`
	ThoughtSignature string           `json:"thoughtSignature,omitempty"`
	InlineData       *gemBlob         `json:"inlineData,omitempty"`
	FileData         *gemFile         `json:"fileData,omitempty"`
	FunctionCall     *gemCall         `json:"functionCall,omitempty"`
	FunctionResponse *gemCallResponse `json:"functionResponse,omitempty"`
}

type gemBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type gemFile struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

type gemCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type gemCallResponse struct {
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type gemConfig struct {
	MaxOutputTokens    int             `json:"maxOutputTokens,omitempty"`
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	TopK               *int            `json:"topK,omitempty"`
	StopSequences      []string        `json:"stopSequences,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
	ThinkingConfig     *gemThinking    `json:"thinkingConfig,omitempty"`
}

type gemThinking struct {
	ThinkingBudget  *int `json:"thinkingBudget,omitempty"`
	IncludeThoughts bool `json:"includeThoughts"`
}

type gemTool struct {
	FunctionDeclarations []gemFunction `json:"functionDeclarations"`
}

// gemFunction declares parameters with parametersJsonSchema: it takes the
// plain JSON Schema clients write, where parameters takes only Gemini's
// OpenAPI subset and refuses keywords such as $schema, $ref or const.
type gemFunction struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

type gemToolConf struct {
	FunctionCallingConfig gemCallingConf `json:"functionCallingConfig"`
}

type gemCallingConf struct {
	Mode                 string   `json:"mode"`
	AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
}

func (geminiCodec) EncodeRequest(r *Request) ([]byte, error) {
	var out gemRequest
	var system []string
	add := func(role string, parts []gemPart) {
		if len(parts) == 0 {
			return
		}
		// Gemini wants turns to alternate; tool results that follow one
		// another, or a user message after them, make one user turn.
		if n := len(out.Contents); n > 0 && out.Contents[n-1].Role == role {
			out.Contents[n-1].Parts = append(out.Contents[n-1].Parts, parts...)
			return
		}
		out.Contents = append(out.Contents, gemContent{Role: role, Parts: parts})
	}
	for i, m := range r.Messages {
		switch m.Role {
		case RoleSystem:
			for _, p := range m.Parts {
				switch p.Kind {
				case PartText:
					if p.Text != "" {
						system = append(system, p.Text)
					}
				case PartImage:
					return nil, Errorf("messages[%d]: Gemini takes text only in system instructions", i)
				}
			}
		case RoleUser:
			parts, err := gemUserParts(m.Parts, i)
			if err != nil {
				return nil, err
			}
			add("user", parts)
		case RoleAssistant:
			parts, err := gemModelParts(m, i)
			if err != nil {
				return nil, err
			}
			add("model", parts)
		case RoleTool:
			parts, err := gemToolParts(r.Messages, i)
			if err != nil {
				return nil, err
			}
			add("user", parts)
		default:
			return nil, Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
	}
	if len(out.Contents) == 0 {
		return nil, Errorf("messages: Gemini needs at least one user or assistant message with content")
	}
	if len(system) > 0 {
		text := strings.Join(system, "\n\n")
		out.SystemInstruction = &gemContent{Parts: []gemPart{{Text: &text}}}
	}

	cfg := gemConfig{MaxOutputTokens: r.MaxTokens, Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK, StopSequences: r.Stop}
	if f := r.Format; f != nil {
		cfg.ResponseMimeType = "application/json"
		if f.Kind == FormatJSONSchema && len(f.Schema) > 0 && string(f.Schema) != "null" {
			if !json.Valid(f.Schema) {
				return nil, Errorf("response format: the schema is not valid JSON")
			}
			cfg.ResponseJSONSchema = f.Schema
		}
	}
	if rs := r.Reasoning; rs != nil {
		cfg.ThinkingConfig = &gemThinking{IncludeThoughts: true}
		if b := rs.Budget(); b > 0 {
			cfg.ThinkingConfig.ThinkingBudget = &b
		}
	}
	if cfg.MaxOutputTokens > 0 || cfg.Temperature != nil || cfg.TopP != nil || cfg.TopK != nil ||
		len(cfg.StopSequences) > 0 || cfg.ResponseMimeType != "" || cfg.ThinkingConfig != nil {
		out.GenerationConfig = &cfg
	}

	if len(r.Tools) > 0 {
		decls := make([]gemFunction, 0, len(r.Tools))
		for i, t := range r.Tools {
			if t.Name == "" {
				return nil, Errorf("tools[%d]: a function needs a name", i)
			}
			fn := gemFunction{Name: t.Name, Description: t.Description}
			if len(t.Parameters) > 0 && string(t.Parameters) != "null" {
				if !json.Valid(t.Parameters) {
					return nil, Errorf("tools[%d]: the parameters schema of %q is not valid JSON", i, t.Name)
				}
				fn.ParametersJSONSchema = t.Parameters
			}
			decls = append(decls, fn)
		}
		out.Tools = []gemTool{{FunctionDeclarations: decls}}
	}
	// A choice among no declared functions constrains nothing.
	if c := r.ToolChoice; c != nil && len(r.Tools) > 0 {
		var cc gemCallingConf
		switch c.Mode {
		case ToolAuto:
			cc.Mode = "AUTO"
		case ToolNone:
			cc.Mode = "NONE"
		case ToolRequired:
			cc.Mode = "ANY"
		case ToolNamed:
			cc.Mode, cc.AllowedFunctionNames = "ANY", []string{c.Name}
		default:
			return nil, Errorf("tool choice: unknown mode %q", c.Mode)
		}
		out.ToolConfig = &gemToolConf{FunctionCallingConfig: cc}
	}
	return json.Marshal(out)
}

func gemUserParts(parts []Part, i int) ([]gemPart, error) {
	var out []gemPart
	for _, p := range parts {
		switch p.Kind {
		case PartText:
			if p.Text != "" {
				t := p.Text
				out = append(out, gemPart{Text: &t})
			}
		case PartImage:
			gp, err := gemImage(p, i)
			if err != nil {
				return nil, err
			}
			out = append(out, gp)
		}
	}
	return out, nil
}

// gemModelParts writes an assistant turn. The hub keeps a Gemini thought
// signature on a thinking part just before the part that carried it (see
// gemAnswer), so the signature goes back on the next part: the first
// function call of a step, where Gemini 3 requires it. Thought text is
// not sent back: Gemini reads only the signature.
func gemModelParts(m Message, i int) ([]gemPart, error) {
	var out []gemPart
	pending := ""
	for _, p := range m.Parts {
		switch p.Kind {
		case PartThinking:
			if p.Signature != "" {
				pending = p.Signature
			}
		case PartText:
			if p.Text == "" {
				continue
			}
			t := p.Text
			out = append(out, gemPart{Text: &t, ThoughtSignature: pending})
			pending = ""
		case PartImage:
			gp, err := gemImage(p, i)
			if err != nil {
				return nil, err
			}
			gp.ThoughtSignature, pending = pending, ""
			out = append(out, gp)
		}
	}
	for _, tc := range m.ToolCalls {
		args, err := gemArgs(tc.Arguments)
		if err != nil {
			return nil, Errorf("messages[%d]: the arguments of tool call %q %s", i, tc.Name, err.Msg)
		}
		out = append(out, gemPart{FunctionCall: &gemCall{Name: tc.Name, Args: args}, ThoughtSignature: pending})
		pending = ""
	}
	if pending != "" {
		// A signature after the last part: Gemini puts it on the last part
		// of an answer without function calls, or on an empty text part
		// when streaming.
		if n := len(out); n > 0 && out[n-1].ThoughtSignature == "" {
			out[n-1].ThoughtSignature = pending
		} else {
			empty := ""
			out = append(out, gemPart{Text: &empty, ThoughtSignature: pending})
		}
	}
	return out, nil
}

func gemArgs(s string) (json.RawMessage, *Error) {
	t := bytes.TrimSpace([]byte(s))
	if len(t) == 0 {
		return json.RawMessage("{}"), nil
	}
	if t[0] != '{' || !json.Valid(t) {
		return nil, Errorf("are not a JSON object")
	}
	return json.RawMessage(t), nil
}

// gemToolParts writes a tool result as a functionResponse. Gemini matches
// results to calls by name, which the hub keeps only on the call.
func gemToolParts(msgs []Message, i int) ([]gemPart, error) {
	m := msgs[i]
	name := ""
	for j := i - 1; j >= 0 && name == ""; j-- {
		if msgs[j].Role != RoleAssistant {
			continue
		}
		for _, tc := range msgs[j].ToolCalls {
			if tc.ID == m.ToolCallID {
				name = tc.Name
				break
			}
		}
	}
	if name == "" {
		return nil, Errorf("messages[%d]: tool result %q answers no earlier tool call, and Gemini needs the function's name", i, m.ToolCallID)
	}
	var text []string
	var extra []gemPart
	for _, p := range m.Parts {
		switch p.Kind {
		case PartText:
			text = append(text, p.Text)
		case PartImage:
			gp, err := gemImage(p, i)
			if err != nil {
				return nil, err
			}
			extra = append(extra, gp)
		}
	}
	result := strings.Join(text, "\n")
	var value any = result
	object := false
	if t := bytes.TrimSpace([]byte(result)); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		value, object = json.RawMessage(t), true
	}
	var resp any
	switch {
	case m.ToolError:
		// Gemini's documented key for a failed call.
		resp = struct {
			Error any `json:"error"`
		}{value}
	case object:
		resp = value
	default:
		resp = struct {
			Content string `json:"content"`
		}{result}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		return nil, Errorf("messages[%d]: tool result: %v", i, err)
	}
	return append([]gemPart{{FunctionResponse: &gemCallResponse{Name: name, Response: raw}}}, extra...), nil
}

func gemImage(p Part, i int) (gemPart, error) {
	if p.Data != "" {
		mt := p.MediaType
		if mt == "" {
			mt = "image/jpeg"
		}
		return gemPart{InlineData: &gemBlob{MimeType: mt, Data: p.Data}}, nil
	}
	if p.URL == "" {
		return gemPart{}, Errorf("messages[%d]: an image has neither data nor URL", i)
	}
	if strings.HasPrefix(p.URL, "data:") {
		img, err := respImage(p.URL, "messages["+strconv.Itoa(i)+"]")
		if err != nil {
			return gemPart{}, err
		}
		return gemPart{InlineData: &gemBlob{MimeType: img.MediaType, Data: img.Data}}, nil
	}
	return gemPart{FileData: &gemFile{MimeType: gemMimeOf(p.URL, p.MediaType), FileURI: p.URL}}, nil
}

// gemMimeOf guesses an image's type from its address, as fileData needs
// one and URLs rarely say.
func gemMimeOf(u, known string) string {
	if known != "" {
		return known
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	switch strings.ToLower(path.Ext(u)) {
	case ".png":
		return "image/png"
	case ".gif":
		return "image/gif"
	case ".webp":
		return "image/webp"
	case ".heic":
		return "image/heic"
	case ".heif":
		return "image/heif"
	case ".pdf":
		return "application/pdf"
	}
	return "image/jpeg"
}

// Answers.

type gemResponse struct {
	Candidates     []gemCandidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *gemUsage  `json:"usageMetadata"`
	ModelVersion  string     `json:"modelVersion"`
	ResponseID    string     `json:"responseId"`
	CreateTime    string     `json:"createTime"`
	Error         *gemAPIErr `json:"error"`
}

type gemCandidate struct {
	Content      *gemContent `json:"content"`
	FinishReason string      `json:"finishReason"`
}

type gemUsage struct {
	PromptTokenCount        int64 `json:"promptTokenCount"`
	CandidatesTokenCount    int64 `json:"candidatesTokenCount"`
	ThoughtsTokenCount      int64 `json:"thoughtsTokenCount"`
	CachedContentTokenCount int64 `json:"cachedContentTokenCount"`
}

type gemAPIErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func (u *gemUsage) hub() Usage {
	return Usage{
		Input:     u.PromptTokenCount,
		Output:    u.CandidatesTokenCount + u.ThoughtsTokenCount,
		CacheRead: u.CachedContentTokenCount,
		Reasoning: u.ThoughtsTokenCount,
	}
}

// gemFinish maps a finish reason; a turn that called functions ends in
// tool_calls whatever Gemini says, as it says STOP.
func gemFinish(reason string, calls bool) Finish {
	if reason == "" {
		return ""
	}
	if calls {
		return FinishToolCalls
	}
	switch reason {
	case "MAX_TOKENS":
		return FinishLength
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
		"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION":
		return FinishContentFilter
	}
	return FinishStop
}

// gemCallID names a function call Gemini gave no id: the response id keeps
// ids unique across the turns of a conversation, the index within one.
func gemCallID(call *gemCall, responseID string, index int) string {
	if call.ID != "" {
		return call.ID
	}
	if id := respSanitizeID(responseID); id != "" {
		return "call_" + id + "_" + strconv.Itoa(index)
	}
	return "call_" + strconv.Itoa(index)
}

func gemArgsText(args json.RawMessage) string {
	var b bytes.Buffer
	if len(args) == 0 || string(args) == "null" || json.Compact(&b, args) != nil {
		return "{}"
	}
	return b.String()
}

func gemParse(body []byte) (*gemResponse, error) {
	t := bytes.TrimSpace(body)
	if len(t) > 0 && t[0] == '[' {
		if msg := gemErrorMessage(t); msg != "" {
			return nil, &Error{Status: http.StatusBadGateway, Msg: "gemini: " + msg}
		}
		return nil, errors.New("gemini: the answer is an array, not a GenerateContentResponse")
	}
	var g gemResponse
	if err := json.Unmarshal(t, &g); err != nil {
		return nil, fmt.Errorf("gemini: reading the answer: %w", err)
	}
	if g.Error != nil {
		status := g.Error.Code
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		msg := g.Error.Message
		if msg == "" {
			msg = g.Error.Status
		}
		return nil, &Error{Status: status, Msg: "gemini: " + msg}
	}
	return &g, nil
}

func (geminiCodec) DecodeResponse(body []byte) (*Response, error) {
	g, err := gemParse(body)
	if err != nil {
		return nil, err
	}
	r := &Response{ID: g.ResponseID, Model: g.ModelVersion}
	if ts, err := time.Parse(time.RFC3339Nano, g.CreateTime); err == nil {
		r.Created = ts.Unix()
	}
	if g.UsageMetadata != nil {
		r.Usage, r.UsageSeen = g.UsageMetadata.hub(), true
	}
	if len(g.Candidates) == 0 {
		r.Finish = FinishStop
		if g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" {
			r.Finish = FinishContentFilter
		}
		return r, nil
	}
	c := g.Candidates[0]
	if c.Content != nil {
		r.Parts, r.ToolCalls = gemAnswer(c.Content.Parts, g.ResponseID)
	}
	r.Finish = gemFinish(c.FinishReason, len(r.ToolCalls) > 0)
	switch {
	case r.Finish != "":
	case len(r.ToolCalls) > 0:
		r.Finish = FinishToolCalls
	default:
		r.Finish = FinishStop
	}
	return r, nil
}

// gemAnswer reads a candidate's parts. A signature on a text or function
// call part becomes an empty thinking part just before it, the only place
// the hub has for it; consecutive text or unsigned thoughts are joined.
func gemAnswer(parts []gemPart, responseID string) ([]Part, []ToolCall) {
	var out []Part
	var calls []ToolCall
	push := func(p Part) {
		if n := len(out); n > 0 && out[n-1].Kind == p.Kind && out[n-1].Signature == "" && p.Kind != PartImage {
			out[n-1].Text += p.Text
			out[n-1].Signature = p.Signature
			return
		}
		out = append(out, p)
	}
	for _, gp := range parts {
		if gp.Thought {
			if gp.Text != nil {
				push(Part{Kind: PartThinking, Text: *gp.Text, Signature: gp.ThoughtSignature})
			}
			continue
		}
		if gp.ThoughtSignature != "" {
			push(Part{Kind: PartThinking, Signature: gp.ThoughtSignature})
		}
		switch {
		case gp.FunctionCall != nil:
			calls = append(calls, ToolCall{
				ID:        gemCallID(gp.FunctionCall, responseID, len(calls)),
				Name:      gp.FunctionCall.Name,
				Arguments: gemArgsText(gp.FunctionCall.Args),
			})
		case gp.Text != nil:
			if *gp.Text != "" {
				push(Part{Kind: PartText, Text: *gp.Text})
			}
		case gp.InlineData != nil:
			out = append(out, Part{Kind: PartImage, MediaType: gp.InlineData.MimeType, Data: gp.InlineData.Data})
		}
	}
	return out, calls
}

func (geminiCodec) NewDecoder() Decoder { return &geminiDecoder{} }

// geminiDecoder reads streamGenerateContent?alt=sse: every event is a whole
// GenerateContentResponse, usage in each is the total so far, and the
// stream just ends.
type geminiDecoder struct {
	idSent bool
	calls  int
}

func (d *geminiDecoder) Event(ds []Delta, _ string, data []byte) ([]Delta, bool, error) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || string(t) == "[DONE]" {
		return ds, false, nil
	}
	g, err := gemParse(t)
	if err != nil {
		return ds, false, err
	}
	if !d.idSent && (g.ResponseID != "" || g.ModelVersion != "") {
		d.idSent = true
		ds = append(ds, Delta{ID: g.ResponseID, Model: g.ModelVersion})
	}
	var finish Finish
	if len(g.Candidates) == 0 {
		if g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" {
			finish = FinishContentFilter
		}
	} else {
		c := g.Candidates[0]
		if c.Content != nil {
			for _, gp := range c.Content.Parts {
				ds = d.part(ds, gp, g.ResponseID)
			}
		}
		finish = gemFinish(c.FinishReason, d.calls > 0)
	}
	if finish != "" {
		ds = append(ds, Delta{Finish: finish})
	}
	if g.UsageMetadata != nil {
		u := g.UsageMetadata.hub()
		ds = append(ds, Delta{Usage: &u})
	}
	return ds, false, nil
}

func (d *geminiDecoder) part(ds []Delta, gp gemPart, responseID string) []Delta {
	if gp.Thought {
		if gp.Text != nil && *gp.Text != "" {
			ds = append(ds, Delta{Thinking: *gp.Text})
		}
		if gp.ThoughtSignature != "" {
			ds = append(ds, Delta{Signature: gp.ThoughtSignature})
		}
		return ds
	}
	if gp.ThoughtSignature != "" {
		ds = append(ds, Delta{Signature: gp.ThoughtSignature})
	}
	switch {
	case gp.FunctionCall != nil:
		ds = append(ds, Delta{Tool: &ToolDelta{
			Index:     d.calls,
			ID:        gemCallID(gp.FunctionCall, responseID, d.calls),
			Name:      gp.FunctionCall.Name,
			Arguments: gemArgsText(gp.FunctionCall.Args),
		}})
		d.calls++
	case gp.Text != nil && *gp.Text != "":
		ds = append(ds, Delta{Text: *gp.Text})
	}
	return ds
}

func (geminiCodec) ErrorMessage(body []byte) string {
	return gemErrorMessage(bytes.TrimSpace(body))
}

// gemErrorMessage reads {"error":{...}}, or the one-element array some
// Google front ends wrap it in.
func gemErrorMessage(body []byte) string {
	type errBody struct {
		Error *gemAPIErr `json:"error"`
	}
	var e errBody
	if len(body) > 0 && body[0] == '[' {
		var arr []errBody
		if json.Unmarshal(body, &arr) != nil || len(arr) == 0 {
			return ""
		}
		e = arr[0]
	} else if json.Unmarshal(body, &e) != nil {
		return ""
	}
	if e.Error == nil {
		return ""
	}
	if e.Error.Message != "" {
		return e.Error.Message
	}
	return e.Error.Status
}

package protocols

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// OpenAIChat is the OpenAI chat completions codec (POST /v1/chat/completions),
// both for clients that speak it and for the OpenAI-style providers behind
// the gateway: OpenAI, Azure, DeepSeek, OpenRouter and the OpenAI surfaces of
// Gemini and Vertex. It reads the fields those providers add (DeepSeek's
// reasoning_content and prompt_cache_hit_tokens, OpenRouter's reasoning) and
// writes only fields every one of them accepts.
//
// Reference: https://platform.openai.com/docs/api-reference/chat
var OpenAIChat = chatCodec{}

var (
	_ Client   = OpenAIChat
	_ Upstream = OpenAIChat
)

type chatCodec struct{}

func (chatCodec) Protocol() Protocol { return ChatCompletions }

func (chatCodec) StreamContentType() string { return "text/event-stream" }

// ---- requests: client → hub ----

type chatRequestIn struct {
	Model               string            `json:"model"`
	Messages            []json.RawMessage `json:"messages"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	MaxTokens           *int              `json:"max_tokens"`
	Temperature         *float64          `json:"temperature"`
	TopP                *float64          `json:"top_p"`
	Stop                json.RawMessage   `json:"stop"`
	Stream              *bool             `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls"`
	ResponseFormat    json.RawMessage   `json:"response_format"`
	ReasoningEffort   *string           `json:"reasoning_effort"`
	User              *string           `json:"user"`
	// safety_identifier replaces user in the current reference; both name
	// the end user.
	SafetyIdentifier *string `json:"safety_identifier"`
}

type chatMessageIn struct {
	Role       *string          `json:"role"`
	Content    json.RawMessage  `json:"content"`
	ToolCalls  []chatToolCallIn `json:"tool_calls"`
	ToolCallID *string          `json:"tool_call_id"`
	// DeepSeek wants the reasoning of a tool-calling turn sent back.
	ReasoningContent *string `json:"reasoning_content"`
}

type chatToolCallIn struct {
	ID       *string        `json:"id"`
	Type     *string        `json:"type"`
	Function chatFunctionIn `json:"function"`
}

type chatFunctionIn struct {
	Name *string `json:"name"`
	// Arguments is a JSON string holding the object's text; a few
	// OpenAI-compatible servers put the object itself.
	Arguments json.RawMessage `json:"arguments"`
}

type chatPartIn struct {
	Type     *string         `json:"type"`
	Text     *string         `json:"text"`
	Refusal  *string         `json:"refusal"`
	ImageURL json.RawMessage `json:"image_url"`
}

type chatToolIn struct {
	Type     *string `json:"type"`
	Function *struct {
		Name        *string         `json:"name"`
		Description *string         `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type chatResponseFormatIn struct {
	Type       *string `json:"type"`
	JSONSchema *struct {
		Name   *string         `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"json_schema"`
}

func (chatCodec) DecodeRequest(body []byte) (*Request, error) {
	if err := chatCheckObject(body, "request body"); err != nil {
		return nil, err
	}
	var in chatRequestIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, chatJSONError("", err)
	}
	r := &Request{
		Model:             in.Model,
		Temperature:       in.Temperature,
		TopP:              in.TopP,
		ParallelToolCalls: in.ParallelToolCalls,
		Stream:            chatBool(in.Stream),
		User:              chatStr(in.User),
	}
	if r.User == "" {
		r.User = chatStr(in.SafetyIdentifier)
	}
	if in.StreamOptions != nil {
		r.StreamUsage = chatBool(in.StreamOptions.IncludeUsage)
	}
	// max_tokens is deprecated in favour of max_completion_tokens; a client
	// that sends both means the newer one.
	switch {
	case in.MaxCompletionTokens != nil:
		r.MaxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil:
		r.MaxTokens = *in.MaxTokens
	}
	if r.MaxTokens < 0 {
		return nil, Errorf("max_completion_tokens/max_tokens: must not be negative")
	}

	if len(in.Messages) == 0 {
		return nil, Errorf("messages: must be a non-empty array")
	}
	r.Messages = make([]Message, 0, len(in.Messages))
	for i, raw := range in.Messages {
		m, err := chatDecodeMessage(raw, fmt.Sprintf("messages[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Messages = append(r.Messages, m)
	}

	var err error
	if r.Stop, err = chatDecodeStop(in.Stop); err != nil {
		return nil, err
	}
	for i, raw := range in.Tools {
		t, err := chatDecodeTool(raw, fmt.Sprintf("tools[%d]", i))
		if err != nil {
			return nil, err
		}
		r.Tools = append(r.Tools, t)
	}
	if r.ToolChoice, err = chatDecodeToolChoice(in.ToolChoice); err != nil {
		return nil, err
	}
	if r.Format, err = chatDecodeFormat(in.ResponseFormat); err != nil {
		return nil, err
	}
	// "none" turns reasoning off on the models that allow it (gpt-5.1), so
	// it asks for no thinking at all.
	if e := chatStr(in.ReasoningEffort); e != "" && e != "none" {
		r.Reasoning = &Reasoning{Effort: e}
	}
	return r, nil
}

func chatDecodeMessage(raw json.RawMessage, field string) (Message, error) {
	var m Message
	if err := chatCheckObject(raw, field); err != nil {
		return m, err
	}
	var in chatMessageIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return m, chatJSONError(field, err)
	}
	role := chatStr(in.Role)
	content := field + ".content"
	var err error
	switch role {
	case "system", "developer":
		m.Role = RoleSystem
		m.Parts, err = chatDecodeContent(in.Content, content, false)
	case "user":
		m.Role = RoleUser
		m.Parts, err = chatDecodeContent(in.Content, content, true)
	case "assistant":
		m.Role = RoleAssistant
		m.Parts, err = chatDecodeContent(in.Content, content, false)
		if err != nil {
			return m, err
		}
		if t := chatStr(in.ReasoningContent); t != "" {
			m.Parts = append([]Part{{Kind: PartThinking, Text: t}}, m.Parts...)
		}
		for j, tc := range in.ToolCalls {
			f := fmt.Sprintf("%s.tool_calls[%d]", field, j)
			if t := chatStr(tc.Type); t != "" && t != "function" {
				return m, Errorf("%s.type: unsupported tool call type %q", f, t)
			}
			call, err := chatDecodeCall(chatStr(tc.ID), tc.Function, f+".function")
			if err != nil {
				return m, err
			}
			if call.ID == "" {
				return m, Errorf("%s.id: required", f)
			}
			m.ToolCalls = append(m.ToolCalls, call)
		}
	case "tool":
		m.Role = RoleTool
		m.ToolCallID = chatStr(in.ToolCallID)
		if m.ToolCallID == "" {
			return m, Errorf("%s.tool_call_id: required for a tool message", field)
		}
		m.Parts, err = chatDecodeContent(in.Content, content, false)
	case "":
		return m, Errorf("%s.role: required", field)
	default:
		return m, Errorf("%s.role: unknown role %q", field, role)
	}
	return m, err
}

func chatDecodeCall(id string, fn chatFunctionIn, field string) (ToolCall, error) {
	name := chatStr(fn.Name)
	if name == "" {
		return ToolCall{}, Errorf("%s.name: required", field)
	}
	args, ok := chatArguments(fn.Arguments)
	if !ok {
		return ToolCall{}, Errorf("%s.arguments: expected a string", field)
	}
	if args == "" {
		args = "{}"
	}
	return ToolCall{ID: id, Name: name, Arguments: args}, nil
}

// chatArguments reads a call's arguments: the JSON string OpenAI sends, or
// an object some compatible servers send in its place.
func chatArguments(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", true
	case raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case raw[0] == '{':
		return string(raw), true
	}
	return "", false
}

// chatDecodeContent reads a message's content: a string, null or an array of
// parts. Images are read only where OpenAI takes them (user messages).
func chatDecodeContent(raw json.RawMessage, field string, images bool) ([]Part, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, chatJSONError(field, err)
		}
		if s == "" {
			return nil, nil
		}
		return []Part{{Kind: PartText, Text: s}}, nil
	case '[':
	default:
		return nil, Errorf("%s: expected a string or an array of content parts", field)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, chatJSONError(field, err)
	}
	parts := make([]Part, 0, len(items))
	for j, item := range items {
		f := fmt.Sprintf("%s[%d]", field, j)
		if err := chatCheckObject(item, f); err != nil {
			return nil, err
		}
		var p chatPartIn
		if err := json.Unmarshal(item, &p); err != nil {
			return nil, chatJSONError(f, err)
		}
		switch typ := chatStr(p.Type); {
		case typ == "text":
			if p.Text == nil {
				return nil, Errorf("%s.text: required for a text part", f)
			}
			if *p.Text != "" {
				parts = append(parts, Part{Kind: PartText, Text: *p.Text})
			}
		case typ == "refusal" && !images:
			// An assistant's refusal is what it said; other protocols have
			// only text for it.
			if t := chatStr(p.Refusal); t != "" {
				parts = append(parts, Part{Kind: PartText, Text: t})
			}
		case typ == "image_url" && images:
			part, err := chatDecodeImage(p.ImageURL, f+".image_url")
			if err != nil {
				return nil, err
			}
			parts = append(parts, part)
		case typ == "":
			return nil, Errorf("%s.type: required", f)
		default:
			return nil, Errorf("%s.type: content part type %q is not supported here", f, typ)
		}
	}
	return parts, nil
}

// chatDecodeImage reads an image_url object; a bare URL string is taken too,
// as several OpenAI-compatible servers accept it.
func chatDecodeImage(raw json.RawMessage, field string) (Part, error) {
	raw = bytes.TrimSpace(raw)
	var url string
	switch {
	case len(raw) > 0 && raw[0] == '"':
		if err := json.Unmarshal(raw, &url); err != nil {
			return Part{}, chatJSONError(field, err)
		}
	case len(raw) > 0 && raw[0] == '{':
		var img struct {
			URL *string `json:"url"`
		}
		if err := json.Unmarshal(raw, &img); err != nil {
			return Part{}, chatJSONError(field, err)
		}
		url = chatStr(img.URL)
	default:
		return Part{}, Errorf("%s: expected an object with a url", field)
	}
	if url == "" {
		return Part{}, Errorf("%s.url: required", field)
	}
	if !strings.HasPrefix(url, "data:") {
		return Part{Kind: PartImage, URL: url}, nil
	}
	mediaType, data, ok := chatParseDataURI(url)
	if !ok {
		return Part{}, Errorf("%s.url: a data URI must be data:<media type>;base64,<data>", field)
	}
	return Part{Kind: PartImage, MediaType: mediaType, Data: data}, nil
}

// chatParseDataURI splits data:<media type>[;params];base64,<data>.
func chatParseDataURI(uri string) (mediaType, data string, ok bool) {
	meta, data, found := strings.Cut(strings.TrimPrefix(uri, "data:"), ",")
	if !found {
		return "", "", false
	}
	meta, isBase64 := strings.CutSuffix(meta, ";base64")
	if !isBase64 {
		return "", "", false
	}
	mediaType, _, _ = strings.Cut(meta, ";")
	return mediaType, data, true
}

func chatDecodeStop(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, chatJSONError("stop", err)
		}
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	}
	var list []string
	if raw[0] != '[' || json.Unmarshal(raw, &list) != nil {
		return nil, Errorf("stop: expected a string or an array of strings")
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func chatDecodeTool(raw json.RawMessage, field string) (Tool, error) {
	if err := chatCheckObject(raw, field); err != nil {
		return Tool{}, err
	}
	var in chatToolIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return Tool{}, chatJSONError(field, err)
	}
	if t := chatStr(in.Type); t != "function" {
		return Tool{}, Errorf("%s.type: unsupported tool type %q (only \"function\")", field, t)
	}
	if in.Function == nil {
		return Tool{}, Errorf("%s.function: required", field)
	}
	name := chatStr(in.Function.Name)
	if name == "" {
		return Tool{}, Errorf("%s.function.name: required", field)
	}
	t := Tool{Name: name, Description: chatStr(in.Function.Description)}
	if p := bytes.TrimSpace(in.Function.Parameters); len(p) > 0 && string(p) != "null" {
		if p[0] != '{' {
			return Tool{}, Errorf("%s.function.parameters: expected a JSON Schema object", field)
		}
		t.Parameters = json.RawMessage(p)
	}
	return t, nil
}

func chatDecodeToolChoice(raw json.RawMessage) (*ToolChoice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, chatJSONError("tool_choice", err)
		}
		switch s {
		case "auto":
			return &ToolChoice{Mode: ToolAuto}, nil
		case "none":
			return &ToolChoice{Mode: ToolNone}, nil
		case "required":
			return &ToolChoice{Mode: ToolRequired}, nil
		}
		return nil, Errorf("tool_choice: unknown value %q (auto, none or required)", s)
	}
	if raw[0] != '{' {
		return nil, Errorf("tool_choice: expected a string or an object")
	}
	var in struct {
		Type     *string `json:"type"`
		Function *struct {
			Name *string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, chatJSONError("tool_choice", err)
	}
	if t := chatStr(in.Type); t != "function" {
		return nil, Errorf("tool_choice.type: unsupported type %q (only \"function\")", t)
	}
	if in.Function == nil || chatStr(in.Function.Name) == "" {
		return nil, Errorf("tool_choice.function.name: required")
	}
	return &ToolChoice{Mode: ToolNamed, Name: *in.Function.Name}, nil
}

func chatDecodeFormat(raw json.RawMessage) (*Format, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if err := chatCheckObject(raw, "response_format"); err != nil {
		return nil, err
	}
	var in chatResponseFormatIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, chatJSONError("response_format", err)
	}
	switch t := chatStr(in.Type); t {
	case "text":
		return nil, nil
	case "json_object":
		return &Format{Kind: FormatJSON}, nil
	case "json_schema":
		if in.JSONSchema == nil {
			return nil, Errorf("response_format.json_schema: required for type json_schema")
		}
		f := &Format{
			Kind:   FormatJSONSchema,
			Name:   chatStr(in.JSONSchema.Name),
			Strict: chatBool(in.JSONSchema.Strict),
		}
		if s := bytes.TrimSpace(in.JSONSchema.Schema); len(s) > 0 && string(s) != "null" {
			if s[0] != '{' {
				return nil, Errorf("response_format.json_schema.schema: expected a JSON Schema object")
			}
			f.Schema = json.RawMessage(s)
		}
		return f, nil
	default:
		return nil, Errorf("response_format.type: unknown type %q", t)
	}
}

// ---- requests: hub → provider ----

type chatRequestOut struct {
	Model               string              `json:"model"`
	Messages            []chatMessageOut    `json:"messages"`
	MaxTokens           int                 `json:"max_tokens,omitempty"`
	MaxCompletionTokens int                 `json:"max_completion_tokens,omitempty"`
	Temperature         *float64            `json:"temperature,omitempty"`
	TopP                *float64            `json:"top_p,omitempty"`
	Stop                []string            `json:"stop,omitempty"`
	Stream              bool                `json:"stream,omitempty"`
	StreamOptions       *chatStreamOptions  `json:"stream_options,omitempty"`
	Tools               []chatToolOut       `json:"tools,omitempty"`
	ToolChoice          any                 `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool               `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *chatResponseFormat `json:"response_format,omitempty"`
	ReasoningEffort     string              `json:"reasoning_effort,omitempty"`
	User                string              `json:"user,omitempty"`
}

type chatStreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessageOut struct {
	Role string `json:"role"`
	// Content is a string, a []chatPartOut, or nil for an assistant turn
	// that only calls tools.
	Content    any               `json:"content"`
	ToolCalls  []chatToolCallOut `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

type chatPartOut struct {
	Type     string        `json:"type"`
	Text     string        `json:"text,omitempty"`
	ImageURL *chatImageURL `json:"image_url,omitempty"`
}

type chatImageURL struct {
	URL string `json:"url"`
}

type chatToolCallOut struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Function chatFunctionOut `json:"function"`
}

type chatFunctionOut struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatToolOut struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

type chatNamedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type chatResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema *chatJSONSchema `json:"json_schema,omitempty"`
}

type chatJSONSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict bool            `json:"strict,omitempty"`
}

func (chatCodec) EncodeRequest(r *Request) ([]byte, error) {
	out := chatRequestOut{
		Model:       r.Model,
		Temperature: r.Temperature,
		TopP:        r.TopP,
		Stop:        r.Stop,
		User:        r.User,
	}
	// Every OpenAI-compatible server takes max_tokens, but OpenAI's
	// reasoning models refuse it and want max_completion_tokens.
	if r.Reasoning != nil {
		out.MaxCompletionTokens = r.MaxTokens
		if r.Reasoning.Effort != "" || r.Reasoning.BudgetTokens > 0 {
			out.ReasoningEffort = r.Reasoning.EffortOrFromBudget()
		}
	} else {
		out.MaxTokens = r.MaxTokens
	}
	if r.Stream {
		// The relay counts the tokens of every stream it translates, and
		// OpenAI sends no stream usage unless asked.
		out.Stream = true
		out.StreamOptions = &chatStreamOptions{IncludeUsage: true}
	}

	msgs, err := chatEncodeMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	out.Messages = msgs

	for _, t := range r.Tools {
		var o chatToolOut
		o.Type = "function"
		o.Function.Name = t.Name
		o.Function.Description = t.Description
		if len(t.Parameters) > 0 {
			o.Function.Parameters = t.Parameters
		}
		out.Tools = append(out.Tools, o)
	}
	// OpenAI refuses tool_choice and parallel_tool_calls without tools.
	if len(out.Tools) > 0 {
		out.ParallelToolCalls = r.ParallelToolCalls
		if tc := r.ToolChoice; tc != nil {
			switch tc.Mode {
			case ToolAuto, ToolNone, ToolRequired:
				out.ToolChoice = tc.Mode
			case ToolNamed:
				var named chatNamedToolChoice
				named.Type = "function"
				named.Function.Name = tc.Name
				out.ToolChoice = named
			default:
				return nil, Errorf("tool_choice: unknown mode %q", tc.Mode)
			}
		}
	}
	if f := r.Format; f != nil {
		switch f.Kind {
		case FormatJSON:
			out.ResponseFormat = &chatResponseFormat{Type: "json_object"}
		case FormatJSONSchema:
			name := f.Name
			if name == "" {
				// OpenAI requires a name; the model never sees it.
				name = "response"
			}
			out.ResponseFormat = &chatResponseFormat{Type: "json_schema", JSONSchema: &chatJSONSchema{
				Name: name, Schema: f.Schema, Strict: f.Strict,
			}}
		default:
			return nil, Errorf("response_format: unknown kind %q", f.Kind)
		}
	}

	body, err := marshalNoHTML(out)
	if err != nil {
		// Only a tool's parameters or a schema can be bad JSON here.
		return nil, Errorf("request cannot be encoded: %v", err)
	}
	return body, nil
}

func chatEncodeMessages(in []Message) ([]chatMessageOut, error) {
	out := make([]chatMessageOut, 0, len(in))
	// Tool results can hold images but OpenAI tool messages cannot; they go
	// in a user message after the run of tool messages, which must follow
	// their assistant turn unbroken.
	var toolImages []chatPartOut
	flush := func() {
		if len(toolImages) > 0 {
			out = append(out, chatMessageOut{Role: "user", Content: toolImages})
			toolImages = nil
		}
	}
	for i, m := range in {
		if m.Role != RoleTool {
			flush()
		}
		switch m.Role {
		case RoleSystem:
			out = append(out, chatMessageOut{Role: "system", Content: chatJoinText(m.Parts, "\n")})
		case RoleUser:
			out = append(out, chatMessageOut{Role: "user", Content: chatUserContent(m.Parts)})
		case RoleAssistant:
			// Thinking has no field OpenAI accepts back, so it is dropped.
			o := chatMessageOut{Role: "assistant"}
			text, hasText := chatText(m.Parts, "\n")
			if hasText || len(m.ToolCalls) == 0 {
				o.Content = text
			}
			for _, c := range m.ToolCalls {
				o.ToolCalls = append(o.ToolCalls, chatEncodeCall(c))
			}
			out = append(out, o)
		case RoleTool:
			out = append(out, chatMessageOut{Role: "tool", ToolCallID: m.ToolCallID, Content: chatJoinText(m.Parts, "\n")})
			for _, p := range m.Parts {
				if p.Kind == PartImage {
					toolImages = append(toolImages, chatImagePart(p))
				}
			}
		default:
			return nil, Errorf("messages[%d].role: unknown role %q", i, m.Role)
		}
	}
	flush()
	return out, nil
}

// chatUserContent is a plain string for text-only content, which every
// OpenAI-compatible server takes (DeepSeek takes no part arrays), and an
// array of parts once there is an image.
func chatUserContent(parts []Part) any {
	hasImage := false
	for _, p := range parts {
		if p.Kind == PartImage {
			hasImage = true
			break
		}
	}
	if !hasImage {
		return chatJoinText(parts, "\n")
	}
	out := make([]chatPartOut, 0, len(parts))
	for _, p := range parts {
		switch p.Kind {
		case PartText:
			out = append(out, chatPartOut{Type: "text", Text: p.Text})
		case PartImage:
			out = append(out, chatImagePart(p))
		}
	}
	return out
}

func chatImagePart(p Part) chatPartOut {
	url := p.URL
	if url == "" {
		url = "data:" + p.MediaType + ";base64," + p.Data
	}
	return chatPartOut{Type: "image_url", ImageURL: &chatImageURL{URL: url}}
}

func chatEncodeCall(c ToolCall) chatToolCallOut {
	args := c.Arguments
	if args == "" {
		args = "{}"
	}
	return chatToolCallOut{ID: c.ID, Type: "function", Function: chatFunctionOut{Name: c.Name, Arguments: args}}
}

// chatText joins the text parts; found reports whether there was one.
func chatText(parts []Part, sep string) (text string, found bool) {
	var b strings.Builder
	for _, p := range parts {
		if p.Kind != PartText {
			continue
		}
		if found {
			b.WriteString(sep)
		}
		b.WriteString(p.Text)
		found = true
	}
	return b.String(), found
}

func chatJoinText(parts []Part, sep string) string {
	s, _ := chatText(parts, sep)
	return s
}

// ---- responses: provider → hub ----

type chatResponseIn struct {
	ID      string          `json:"id"`
	Model   string          `json:"model"`
	Created json.Number     `json:"created"`
	Choices []chatChoiceIn  `json:"choices"`
	Usage   *chatUsageIn    `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

type chatChoiceIn struct {
	Index        int          `json:"index"`
	Message      chatAnswerIn `json:"message"`
	FinishReason *string      `json:"finish_reason"`
}

// chatAnswerIn is a response's message or a chunk's delta.
type chatAnswerIn struct {
	Content          json.RawMessage  `json:"content"`
	Refusal          *string          `json:"refusal"`
	ReasoningContent *string          `json:"reasoning_content"` // DeepSeek
	Reasoning        *string          `json:"reasoning"`         // OpenRouter
	ToolCalls        []chatToolCallIn `json:"tool_calls"`
	FunctionCall     *chatFunctionIn  `json:"function_call"`
}

type chatToolDeltaIn struct {
	Index    *int           `json:"index"`
	ID       *string        `json:"id"`
	Function chatFunctionIn `json:"function"`
}

type chatUsageIn struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptCacheHitToken int64 `json:"prompt_cache_hit_tokens"` // DeepSeek
	PromptTokensDetails *struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (u *chatUsageIn) hub() Usage {
	h := Usage{Input: u.PromptTokens, Output: u.CompletionTokens, CacheRead: u.PromptCacheHitToken}
	if d := u.PromptTokensDetails; d != nil {
		if d.CachedTokens > 0 {
			h.CacheRead = d.CachedTokens
		}
		h.CacheWrite = d.CacheWriteTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		h.Reasoning = d.ReasoningTokens
	}
	return h
}

func (c chatCodec) DecodeResponse(body []byte) (*Response, error) {
	var in chatResponseIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("openai chat answer: %w", err)
	}
	if chatPresent(in.Error) {
		msg := c.ErrorMessage(body)
		if msg == "" {
			msg = string(bytes.TrimSpace(in.Error))
		}
		return nil, fmt.Errorf("openai chat answer is an error: %s", msg)
	}
	choice := chatFirstChoice(in.Choices)
	if choice == nil {
		return nil, errors.New("openai chat answer has no choices")
	}
	r := &Response{ID: in.ID, Model: in.Model, Finish: chatFinish(choice.FinishReason)}
	r.Created, _ = in.Created.Int64()
	msg := &choice.Message
	if t := chatReasoning(msg); t != "" {
		r.Parts = append(r.Parts, Part{Kind: PartThinking, Text: t})
	}
	text, err := chatAnswerText(msg.Content)
	if err != nil {
		return nil, err
	}
	if text == "" {
		text = chatStr(msg.Refusal)
	}
	if text != "" {
		r.Parts = append(r.Parts, Part{Kind: PartText, Text: text})
	}
	for _, tc := range msg.ToolCalls {
		args, _ := chatArguments(tc.Function.Arguments)
		r.ToolCalls = append(r.ToolCalls, ToolCall{ID: chatStr(tc.ID), Name: chatStr(tc.Function.Name), Arguments: args})
	}
	if fc := msg.FunctionCall; fc != nil && len(r.ToolCalls) == 0 {
		args, _ := chatArguments(fc.Arguments)
		r.ToolCalls = append(r.ToolCalls, ToolCall{ID: chatNewID("call_"), Name: chatStr(fc.Name), Arguments: args})
	}
	for i := range r.ToolCalls {
		if r.ToolCalls[i].ID == "" {
			// Other protocols cannot answer a call without an id.
			r.ToolCalls[i].ID = chatNewID("call_")
		}
	}
	if in.Usage != nil {
		r.Usage, r.UsageSeen = in.Usage.hub(), true
	}
	return r, nil
}

// chatFirstChoice is the choice with index 0: the hub has one answer.
func chatFirstChoice(cs []chatChoiceIn) *chatChoiceIn {
	for i := range cs {
		if cs[i].Index == 0 {
			return &cs[i]
		}
	}
	return nil
}

func chatReasoning(a *chatAnswerIn) string {
	if t := chatStr(a.ReasoningContent); t != "" {
		return t
	}
	return chatStr(a.Reasoning)
}

// chatAnswerText reads an answer's content: a string or null from OpenAI,
// an array of text parts from a few compatible servers.
func chatAnswerText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("openai chat answer: content: %w", err)
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

func chatFinish(reason *string) Finish {
	switch chatStr(reason) {
	case "length":
		return FinishLength
	case "tool_calls", "function_call":
		return FinishToolCalls
	case "content_filter":
		return FinishContentFilter
	}
	return FinishStop
}

// ---- responses: hub → client ----

type chatResponseOut struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chatChoiceOut `json:"choices"`
	Usage   chatUsageOut    `json:"usage"`
}

type chatChoiceOut struct {
	Index        int           `json:"index"`
	Message      chatAnswerOut `json:"message"`
	Logprobs     *struct{}     `json:"logprobs"`
	FinishReason Finish        `json:"finish_reason"`
}

type chatAnswerOut struct {
	Role             string            `json:"role"`
	Content          *string           `json:"content"`
	ReasoningContent string            `json:"reasoning_content,omitempty"`
	ToolCalls        []chatToolCallOut `json:"tool_calls,omitempty"`
}

type chatUsageOut struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (chatCodec) EncodeResponse(r *Response) ([]byte, error) {
	created := r.Created
	if created == 0 {
		created = time.Now().Unix()
	}
	msg := chatAnswerOut{Role: "assistant"}
	if text, found := chatText(r.Parts, ""); found {
		msg.Content = &text
	}
	var thinking strings.Builder
	for _, p := range r.Parts {
		if p.Kind == PartThinking {
			thinking.WriteString(p.Text)
		}
	}
	msg.ReasoningContent = thinking.String()
	for _, c := range r.ToolCalls {
		if c.ID == "" {
			c.ID = chatNewID("call_")
		}
		msg.ToolCalls = append(msg.ToolCalls, chatEncodeCall(c))
	}
	out := chatResponseOut{
		ID:      chatCompletionID(r.ID),
		Object:  "chat.completion",
		Created: created,
		Model:   r.Model,
		Choices: []chatChoiceOut{{Message: msg, FinishReason: chatFinishOut(r.Finish, len(r.ToolCalls) > 0)}},
		Usage:   chatUsage(r.Usage),
	}
	return marshalNoHTML(out)
}

func chatUsage(u Usage) chatUsageOut {
	o := chatUsageOut{PromptTokens: u.Input, CompletionTokens: u.Output, TotalTokens: u.Total()}
	o.PromptTokensDetails.CachedTokens = u.CacheRead
	o.PromptTokensDetails.CacheWriteTokens = u.CacheWrite
	o.CompletionTokensDetails.ReasoningTokens = u.Reasoning
	return o
}

func chatFinishOut(f Finish, calledTools bool) Finish {
	switch {
	case f != "":
		return f
	case calledTools:
		return FinishToolCalls
	}
	return FinishStop
}

// chatCompletionID keeps OpenAI's id shape, which some clients check.
func chatCompletionID(id string) string {
	switch {
	case id == "":
		return chatNewID("chatcmpl-")
	case strings.HasPrefix(id, "chatcmpl-"):
		return id
	}
	return "chatcmpl-" + id
}

// ---- streams: provider → hub ----

func (chatCodec) NewDecoder() Decoder { return &chatDecoder{} }

type chatDecoder struct {
	idSent, modelSent bool
	// calls maps the provider's tool-call indexes to the hub's, which count
	// from 0 in order: Gemini's OpenAI surface has been seen to give every
	// call index 0 and others to omit the index.
	calls []chatCallSlot
}

type chatCallSlot struct {
	upstream int // -1: the provider gave no index
	id       string
	idSent   bool
	nameSent bool
}

type chatChunkIn struct {
	ID      string            `json:"id"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   *chatUsageIn      `json:"usage"`
	Error   json.RawMessage   `json:"error"`
}

type chatChunkChoice struct {
	Index        int            `json:"index"`
	Delta        chatChunkDelta `json:"delta"`
	FinishReason *string        `json:"finish_reason"`
}

type chatChunkDelta struct {
	Content          *string           `json:"content"`
	Refusal          *string           `json:"refusal"`
	ReasoningContent *string           `json:"reasoning_content"`
	Reasoning        *string           `json:"reasoning"`
	ToolCalls        []chatToolDeltaIn `json:"tool_calls"`
	FunctionCall     *chatFunctionIn   `json:"function_call"`
}

func (d *chatDecoder) Event(ds []Delta, _ string, data []byte) ([]Delta, bool, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return ds, false, nil
	}
	if string(data) == "[DONE]" {
		return ds, true, nil
	}
	if out, ok := d.chatTextChunk(ds, data); ok {
		return out, false, nil
	}
	var in chatChunkIn
	if err := json.Unmarshal(data, &in); err != nil {
		return ds, false, fmt.Errorf("openai chat stream: %w", err)
	}
	if chatPresent(in.Error) {
		msg := OpenAIChat.ErrorMessage(data)
		if msg == "" {
			msg = string(in.Error)
		}
		return ds, false, fmt.Errorf("openai chat stream error: %s", msg)
	}

	head := Delta{}
	if in.ID != "" && !d.idSent {
		head.ID, d.idSent = in.ID, true
	}
	// Azure's first chunk has an empty model; the first real one counts.
	if in.Model != "" && !d.modelSent {
		head.Model, d.modelSent = in.Model, true
	}
	var tail Delta
	var tools []Delta
	for i := range in.Choices {
		c := &in.Choices[i]
		if c.Index != 0 {
			continue
		}
		head.Thinking = chatStr(c.Delta.ReasoningContent)
		if head.Thinking == "" {
			head.Thinking = chatStr(c.Delta.Reasoning)
		}
		head.Text = chatStr(c.Delta.Content) + chatStr(c.Delta.Refusal)
		for j := range c.Delta.ToolCalls {
			tc := &c.Delta.ToolCalls[j]
			up := -1
			if tc.Index != nil {
				up = *tc.Index
			}
			tools = append(tools, Delta{Tool: d.tool(up, chatStr(tc.ID), chatStr(tc.Function.Name), tc.Function.Arguments)})
		}
		if fc := c.Delta.FunctionCall; fc != nil && len(c.Delta.ToolCalls) == 0 {
			tools = append(tools, Delta{Tool: d.tool(0, "", chatStr(fc.Name), fc.Arguments)})
		}
		if c.FinishReason != nil && *c.FinishReason != "" {
			tail.Finish = chatFinish(c.FinishReason)
		}
		break
	}
	if in.Usage != nil {
		u := in.Usage.hub()
		tail.Usage = &u
	}
	// Finish and usage go last so that encoders close the answer after its
	// text and calls; with no calls they ride on the one delta.
	if len(tools) == 0 {
		head.Finish, head.Usage = tail.Finish, tail.Usage
		tail = Delta{}
	}
	if head != (Delta{}) {
		ds = append(ds, head)
	}
	ds = append(ds, tools...)
	if tail != (Delta{}) {
		ds = append(ds, tail)
	}
	return ds, false, nil
}

// tool maps one tool_calls fragment to the hub's call index.
func (d *chatDecoder) tool(up int, id, name string, rawArgs json.RawMessage) *ToolDelta {
	args, ok := chatArguments(rawArgs)
	if !ok {
		args = string(rawArgs)
	}
	idx := -1
	if up >= 0 {
		for i := len(d.calls) - 1; i >= 0; i-- {
			if s := &d.calls[i]; s.upstream == up {
				if id == "" || s.id == "" || s.id == id {
					idx = i
				}
				break
			}
		}
	} else if id == "" && len(d.calls) > 0 {
		idx = len(d.calls) - 1
	}
	if idx < 0 {
		if id == "" {
			// Other protocols cannot answer a call without an id.
			id = chatNewID("call_")
		}
		d.calls = append(d.calls, chatCallSlot{upstream: up, id: id})
		idx = len(d.calls) - 1
	}
	s := &d.calls[idx]
	if s.id == "" {
		s.id = id
	}
	t := &ToolDelta{Index: idx, Arguments: args}
	if !s.idSent && s.id != "" {
		t.ID, s.idSent = s.id, true
	}
	if !s.nameSent && name != "" {
		t.Name, s.nameSent = name, true
	}
	return t
}

// ---- streams: hub → client ----

func (chatCodec) NewEncoder(req *Request) Encoder {
	e := &chatEncoder{created: time.Now().Unix()}
	if req != nil {
		e.model, e.streamUsage = req.Model, req.StreamUsage
	}
	return e
}

type chatEncoder struct {
	id          string
	model       string
	created     int64
	streamUsage bool
	// head opens every chunk: data: {"id":…,"model":…,"choices":[
	head    []byte
	started bool
	ended   bool
	finish  Finish
	usage   *Usage
	// tools holds the hub indexes of the calls already opened.
	tools map[int]struct{}
}

func (e *chatEncoder) Delta(dst []byte, d *Delta) []byte {
	if e.ended || d == nil {
		return dst
	}
	if !e.started {
		// The id and model are fixed by the first chunk, so they are taken
		// from deltas until there is something to send.
		if d.ID != "" && e.id == "" {
			e.id = d.ID
		}
		if d.Model != "" {
			e.model = d.Model
		}
	}
	if d.Finish != "" {
		e.finish = d.Finish
	}
	if d.Usage != nil {
		u := *d.Usage
		e.usage = &u
	}
	if d.Thinking == "" && d.Text == "" && d.Tool == nil {
		return dst
	}
	dst = e.start(dst)
	if d.Thinking != "" {
		dst = e.open(dst)
		dst = append(dst, `"reasoning_content":`...)
		dst = appendJSONString(dst, d.Thinking)
		dst = e.close(dst)
	}
	if d.Text != "" {
		dst = e.open(dst)
		dst = append(dst, `"content":`...)
		dst = appendJSONString(dst, d.Text)
		dst = e.close(dst)
	}
	if t := d.Tool; t != nil {
		dst = e.tool(dst, t)
	}
	return dst
}

func (e *chatEncoder) tool(dst []byte, t *ToolDelta) []byte {
	_, seen := e.tools[t.Index]
	if seen && t.Arguments == "" {
		return dst
	}
	dst = e.open(dst)
	dst = append(dst, `"tool_calls":[{"index":`...)
	dst = strconv.AppendInt(dst, int64(t.Index), 10)
	if !seen {
		if e.tools == nil {
			e.tools = make(map[int]struct{})
		}
		e.tools[t.Index] = struct{}{}
		id := t.ID
		if id == "" {
			// Clients send the id back with the result; it must exist.
			id = chatNewID("call_")
		}
		dst = append(dst, `,"id":`...)
		dst = appendJSONString(dst, id)
		dst = append(dst, `,"type":"function","function":{"name":`...)
		dst = appendJSONString(dst, t.Name)
		dst = append(dst, `,"arguments":`...)
	} else {
		dst = append(dst, `,"function":{"arguments":`...)
	}
	dst = appendJSONString(dst, t.Arguments)
	dst = append(dst, "}}]"...)
	return e.close(dst)
}

func (e *chatEncoder) End(dst []byte) []byte {
	if e.ended {
		return dst
	}
	e.ended = true
	dst = e.start(dst)
	dst = append(dst, e.head...)
	dst = append(dst, `{"index":0,"delta":{},"finish_reason":`...)
	dst = appendJSONString(dst, string(chatFinishOut(e.finish, len(e.tools) > 0)))
	dst = append(dst, "}]}\n\n"...)
	// OpenAI sends usage only to clients that asked, in a chunk of its own
	// with no choices. Without a usage from upstream there is none to send:
	// zeros would be counted as a free call.
	if e.streamUsage && e.usage != nil {
		u := e.usage
		dst = append(dst, e.head...)
		dst = append(dst, `],"usage":{"prompt_tokens":`...)
		dst = strconv.AppendInt(dst, u.Input, 10)
		dst = append(dst, `,"completion_tokens":`...)
		dst = strconv.AppendInt(dst, u.Output, 10)
		dst = append(dst, `,"total_tokens":`...)
		dst = strconv.AppendInt(dst, u.Total(), 10)
		dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
		dst = strconv.AppendInt(dst, u.CacheRead, 10)
		if u.CacheWrite > 0 {
			dst = append(dst, `,"cache_write_tokens":`...)
			dst = strconv.AppendInt(dst, u.CacheWrite, 10)
		}
		dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
		dst = strconv.AppendInt(dst, u.Reasoning, 10)
		dst = append(dst, "}}}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}

// start writes the role chunk that opens every OpenAI stream.
func (e *chatEncoder) start(dst []byte) []byte {
	if e.started {
		return dst
	}
	e.started = true
	h := append([]byte(nil), `data: {"id":`...)
	h = appendJSONString(h, chatCompletionID(e.id))
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, e.created, 10)
	h = append(h, `,"model":`...)
	h = appendJSONString(h, e.model)
	h = append(h, `,"choices":[`...)
	e.head = h
	dst = e.open(dst)
	dst = append(dst, `"role":"assistant","content":""`...)
	return e.close(dst)
}

func (e *chatEncoder) open(dst []byte) []byte {
	dst = append(dst, e.head...)
	return append(dst, `{"index":0,"delta":{`...)
}

func (e *chatEncoder) close(dst []byte) []byte {
	return append(dst, "},\"finish_reason\":null}]}\n\n"...)
}

// ---- errors ----

func (chatCodec) EncodeError(status int, kind, msg string) []byte {
	type errorBody struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
		Param   *string `json:"param"`
	}
	e := errorBody{Message: msg, Type: kind}
	if kind != "" {
		e.Code = &kind
	} else {
		e.Type = chatErrorType(status)
	}
	body, _ := marshalNoHTML(struct {
		Error errorBody `json:"error"`
	}{e})
	return body
}

func chatErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// ErrorMessage reads OpenAI's {"error":{"message"}}, the bare {"message"}
// some compatible servers send, and the one-element array Gemini's and
// Vertex's OpenAI surfaces wrap their errors in.
func (chatCodec) ErrorMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil || len(list) == 0 {
			return ""
		}
		body = bytes.TrimSpace(list[0])
	}
	if len(body) == 0 || body[0] != '{' {
		return ""
	}
	var in struct {
		Error   json.RawMessage `json:"error"`
		Message *string         `json:"message"`
	}
	if json.Unmarshal(body, &in) != nil {
		return ""
	}
	if e := bytes.TrimSpace(in.Error); len(e) > 0 {
		switch e[0] {
		case '{':
			var inner struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(e, &inner) == nil && inner.Message != "" {
				return inner.Message
			}
		case '"':
			var s string
			if json.Unmarshal(e, &s) == nil && s != "" {
				return s
			}
		}
	}
	return chatStr(in.Message)
}

// ---- helpers ----

func chatStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func chatBool(b *bool) bool { return b != nil && *b }

func chatPresent(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// chatCheckObject refuses anything but a JSON object, before decoding gives
// a less clear message.
func chatCheckObject(raw []byte, field string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Errorf("%s: expected a JSON object, got nothing", field)
	}
	if raw[0] != '{' {
		if !json.Valid(raw) {
			return Errorf("%s: invalid JSON", field)
		}
		return Errorf("%s: expected a JSON object", field)
	}
	return nil
}

// chatJSONError turns a decoding error into a 400 that names the field.
func chatJSONError(field string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		name := te.Field
		switch {
		case field != "" && name != "":
			name = field + "." + name
		case field != "":
			name = field
		case name == "":
			name = "request body"
		}
		return Errorf("%s: expected %s, got %s", name, jsonKind(te.Type), te.Value)
	}
	if field == "" {
		field = "request body"
	}
	return Errorf("%s: invalid JSON: %v", field, err)
}

func chatNewID(prefix string) string { return prefix + rand.Text() }

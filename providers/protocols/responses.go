package protocols

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// OpenAIResponses reads OpenAI Responses requests and writes answers in that
// protocol, for Responses clients routed to a provider that does not speak
// it. Calls to OpenAI itself are passed through untranslated.
var OpenAIResponses Client = responsesCodec{}

type responsesCodec struct{}

func (responsesCodec) Protocol() Protocol { return Responses }

func (responsesCodec) StreamContentType() string { return "text/event-stream" }

// respRequest is the part of a Responses request the hub can carry, plus the
// fields that ask for state only OpenAI keeps, so they can be refused.
type respRequest struct {
	Model             string          `json:"model"`
	Instructions      json.RawMessage `json:"instructions"`
	Input             json.RawMessage `json:"input"`
	MaxOutputTokens   *int            `json:"max_output_tokens"`
	Temperature       *float64        `json:"temperature"`
	TopP              *float64        `json:"top_p"`
	Stream            *bool           `json:"stream"`
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Text              *struct {
		Format *respTextFormat `json:"format"`
	} `json:"text"`
	Reasoning *struct {
		Effort *string `json:"effort"`
	} `json:"reasoning"`
	User             string `json:"user"`
	SafetyIdentifier string `json:"safety_identifier"`

	PreviousResponseID *string         `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	Background         *bool           `json:"background"`
	Prompt             json.RawMessage `json:"prompt"`
}

type respTextFormat struct {
	Type   string          `json:"type"`
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict *bool           `json:"strict,omitempty"`
}

// respItem is any input item; which fields matter depends on Type (or on
// Role alone, for the short message form without a type).
type respItem struct {
	Type             string          `json:"type"`
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	CallID           string          `json:"call_id"`
	Name             string          `json:"name"`
	Arguments        string          `json:"arguments"`
	Output           json.RawMessage `json:"output"`
	Summary          []respSummary   `json:"summary"`
	EncryptedContent *string         `json:"encrypted_content"`
}

type respSummary struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type respInPart struct {
	Type     string  `json:"type"`
	Text     string  `json:"text"`
	Refusal  string  `json:"refusal"`
	ImageURL *string `json:"image_url"`
	FileID   *string `json:"file_id"`
}

type respInTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

type respInToolChoice struct {
	Type  string       `json:"type"`
	Name  string       `json:"name"`
	Mode  string       `json:"mode"`
	Tools []respInTool `json:"tools"`
}

func (responsesCodec) DecodeRequest(body []byte) (*Request, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, Errorf("request body is empty")
	}
	if trimmed[0] != '{' {
		return nil, Errorf("request body must be a JSON object")
	}
	var in respRequest
	if err := json.Unmarshal(trimmed, &in); err != nil {
		return nil, respJSONError("", err)
	}

	// These name state kept on OpenAI's servers; no other provider has it,
	// and answering without it would silently lose the conversation.
	if in.PreviousResponseID != nil && *in.PreviousResponseID != "" {
		return nil, Errorf("previous_response_id: earlier responses are stored by OpenAI and this provider cannot read them; send the whole conversation in input")
	}
	if respPresent(in.Conversation) {
		return nil, Errorf("conversation: conversations are stored by OpenAI and this provider cannot read them; send the whole conversation in input")
	}
	if respPresent(in.Prompt) {
		return nil, Errorf("prompt: prompt templates are stored by OpenAI and this provider cannot read them; send instructions and input instead")
	}
	if in.Background != nil && *in.Background {
		return nil, Errorf("background: background responses need OpenAI itself; call without background")
	}

	r := &Request{Model: in.Model, User: in.User}
	if r.User == "" {
		r.User = in.SafetyIdentifier
	}
	if in.Stream != nil {
		r.Stream = *in.Stream
	}
	if in.MaxOutputTokens != nil {
		if *in.MaxOutputTokens < 1 {
			return nil, Errorf("max_output_tokens: must be at least 1")
		}
		r.MaxTokens = *in.MaxOutputTokens
	}
	r.Temperature, r.TopP, r.ParallelToolCalls = in.Temperature, in.TopP, in.ParallelToolCalls

	if respPresent(in.Instructions) {
		var s string
		if err := json.Unmarshal(in.Instructions, &s); err != nil {
			return nil, Errorf("instructions: must be a string")
		}
		if s != "" {
			r.Messages = append(r.Messages, Message{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: s}}})
		}
	}
	msgs, err := respInput(in.Input)
	if err != nil {
		return nil, err
	}
	r.Messages = append(r.Messages, msgs...)

	if r.Tools, err = respTools(in.Tools); err != nil {
		return nil, err
	}
	if r.ToolChoice, r.Tools, err = respToolChoice(in.ToolChoice, r.Tools); err != nil {
		return nil, err
	}
	if in.Text != nil && in.Text.Format != nil {
		if r.Format, err = respFormat(in.Text.Format); err != nil {
			return nil, err
		}
	}
	if in.Reasoning != nil && in.Reasoning.Effort != nil {
		switch e := *in.Reasoning.Effort; e {
		case "none":
		case "minimal", "low", "medium", "high":
			r.Reasoning = &Reasoning{Effort: e}
		case "xhigh":
			// The hub's scale ends at high; providers that take a budget
			// have nothing beyond it either.
			r.Reasoning = &Reasoning{Effort: "high"}
		default:
			return nil, Errorf("reasoning.effort: %q is not one of none, minimal, low, medium, high, xhigh", e)
		}
	}
	return r, nil
}

func respPresent(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// respInput turns input into hub messages. The items of one assistant turn
// (reasoning, message, function calls) arrive as separate items and are
// joined into one hub message, as every other protocol has them.
func respInput(raw json.RawMessage) ([]Message, error) {
	if !respPresent(raw) {
		return nil, Errorf("input: required (a string or an array of input items)")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, respJSONError("input", err)
		}
		return []Message{{Role: RoleUser, Parts: []Part{{Kind: PartText, Text: s}}}}, nil
	}
	if raw[0] != '[' {
		return nil, Errorf("input: must be a string or an array of input items")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, respJSONError("input", err)
	}
	if len(items) == 0 {
		return nil, Errorf("input: empty")
	}
	var msgs []Message
	// assistant returns the open assistant turn to add to, starting one when
	// the last message is not an assistant's or already has calls and the
	// item cannot follow them.
	assistant := func(afterCalls bool) *Message {
		if n := len(msgs); n > 0 && msgs[n-1].Role == RoleAssistant && (afterCalls || len(msgs[n-1].ToolCalls) == 0) {
			return &msgs[n-1]
		}
		msgs = append(msgs, Message{Role: RoleAssistant})
		return &msgs[len(msgs)-1]
	}
	for i, rawItem := range items {
		path := "input[" + strconv.Itoa(i) + "]"
		if t := bytes.TrimSpace(rawItem); len(t) == 0 || t[0] != '{' {
			return nil, Errorf("%s: must be an object", path)
		}
		var it respItem
		if err := json.Unmarshal(rawItem, &it); err != nil {
			return nil, respJSONError(path, err)
		}
		typ := it.Type
		if typ == "" && it.Role != "" {
			typ = "message"
		}
		switch typ {
		case "message":
			parts, err := respContent(it.Content, path+".content")
			if err != nil {
				return nil, err
			}
			switch it.Role {
			case "system", "developer":
				msgs = append(msgs, Message{Role: RoleSystem, Parts: parts})
			case "user":
				msgs = append(msgs, Message{Role: RoleUser, Parts: parts})
			case "assistant":
				m := assistant(false)
				m.Parts = append(m.Parts, parts...)
			case "":
				return nil, Errorf("%s.role: required", path)
			default:
				return nil, Errorf("%s.role: %q is not one of system, developer, user, assistant", path, it.Role)
			}
		case "function_call":
			if it.CallID == "" {
				return nil, Errorf("%s.call_id: required", path)
			}
			if it.Name == "" {
				return nil, Errorf("%s.name: required", path)
			}
			m := assistant(true)
			m.ToolCalls = append(m.ToolCalls, ToolCall{ID: it.CallID, Name: it.Name, Arguments: it.Arguments})
		case "function_call_output":
			if it.CallID == "" {
				return nil, Errorf("%s.call_id: required", path)
			}
			parts, err := respContent(it.Output, path+".output")
			if err != nil {
				return nil, err
			}
			if len(parts) == 0 {
				parts = []Part{{Kind: PartText}}
			}
			msgs = append(msgs, Message{Role: RoleTool, ToolCallID: it.CallID, Parts: parts})
		case "reasoning":
			// The summary is all a client holds of OpenAI's reasoning; the
			// encrypted content is where this codec's own answers keep a
			// thinking signature (see respReasoning), so it goes back as one.
			var text []string
			for _, s := range it.Summary {
				if s.Text != "" {
					text = append(text, s.Text)
				}
			}
			p := Part{Kind: PartThinking, Text: strings.Join(text, "\n\n")}
			if it.EncryptedContent != nil {
				p.Signature = *it.EncryptedContent
			}
			if p.Text == "" && p.Signature == "" {
				continue
			}
			m := assistant(false)
			m.Parts = append(m.Parts, p)
		case "item_reference":
			return nil, Errorf("%s: item_reference points at an item stored by OpenAI; send the item itself", path)
		case "":
			return nil, Errorf("%s: has neither type nor role", path)
		default:
			return nil, Errorf("%s: %s items need OpenAI itself and cannot be sent to this provider", path, typ)
		}
	}
	return msgs, nil
}

// respContent reads message content or a function call's output: a string,
// or an array of content parts.
func respContent(raw json.RawMessage, path string) ([]Part, error) {
	if !respPresent(raw) {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, respJSONError(path, err)
		}
		return []Part{{Kind: PartText, Text: s}}, nil
	case '[':
	default:
		return nil, Errorf("%s: must be a string or an array of content parts", path)
	}
	var in []respInPart
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, respJSONError(path, err)
	}
	parts := make([]Part, 0, len(in))
	for i, p := range in {
		pp := path + "[" + strconv.Itoa(i) + "]"
		switch p.Type {
		case "input_text", "output_text", "text":
			parts = append(parts, Part{Kind: PartText, Text: p.Text})
		case "refusal":
			parts = append(parts, Part{Kind: PartText, Text: p.Refusal})
		case "input_image":
			if p.ImageURL == nil || *p.ImageURL == "" {
				if p.FileID != nil && *p.FileID != "" {
					return nil, Errorf("%s.file_id: files uploaded to OpenAI cannot be read by this provider; send image_url", pp)
				}
				return nil, Errorf("%s.image_url: required", pp)
			}
			img, err := respImage(*p.ImageURL, pp+".image_url")
			if err != nil {
				return nil, err
			}
			parts = append(parts, img)
		case "":
			return nil, Errorf("%s.type: required", pp)
		default:
			return nil, Errorf("%s: %s parts cannot be translated for this provider", pp, p.Type)
		}
	}
	return parts, nil
}

// respImage splits a data: URI into the hub's inline form; other URLs stay
// addresses.
func respImage(u, path string) (Part, error) {
	if !strings.HasPrefix(u, "data:") {
		return Part{Kind: PartImage, URL: u}, nil
	}
	meta, data, ok := strings.Cut(u[len("data:"):], ",")
	mt, isBase64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isBase64 {
		return Part{}, Errorf("%s: a data URI must be base64 (data:<type>;base64,<data>)", path)
	}
	if mt == "" {
		return Part{}, Errorf("%s: the data URI has no media type", path)
	}
	return Part{Kind: PartImage, MediaType: mt, Data: data}, nil
}

func respTools(raw json.RawMessage) ([]Tool, error) {
	if !respPresent(raw) {
		return nil, nil
	}
	var in []json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, respJSONError("tools", err)
	}
	var tools []Tool
	for i, rt := range in {
		path := "tools[" + strconv.Itoa(i) + "]"
		var t respInTool
		if err := json.Unmarshal(rt, &t); err != nil {
			return nil, respJSONError(path, err)
		}
		if t.Type != "function" {
			if t.Type == "" {
				return nil, Errorf("%s.type: required", path)
			}
			return nil, Errorf("%s: %s tools are run by OpenAI itself and cannot be used with this provider", path, t.Type)
		}
		if t.Name == "" {
			return nil, Errorf("%s.name: required", path)
		}
		tool := Tool{Name: t.Name, Description: t.Description}
		if respPresent(t.Parameters) {
			tool.Parameters = t.Parameters
		}
		tools = append(tools, tool)
	}
	return tools, nil
}

// respToolChoice reads tool_choice. allowed_tools narrows the tool list
// itself, which is what it means for a provider that has no such choice.
func respToolChoice(raw json.RawMessage, tools []Tool) (*ToolChoice, []Tool, error) {
	if !respPresent(raw) {
		return nil, tools, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, nil, respJSONError("tool_choice", err)
		}
		switch s {
		case "auto":
			return &ToolChoice{Mode: ToolAuto}, tools, nil
		case "none":
			return &ToolChoice{Mode: ToolNone}, tools, nil
		case "required":
			return &ToolChoice{Mode: ToolRequired}, tools, nil
		}
		return nil, nil, Errorf("tool_choice: %q is not one of auto, none, required", s)
	}
	var c respInToolChoice
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, respJSONError("tool_choice", err)
	}
	switch c.Type {
	case "function":
		if c.Name == "" {
			return nil, nil, Errorf("tool_choice.name: required")
		}
		return &ToolChoice{Mode: ToolNamed, Name: c.Name}, tools, nil
	case "allowed_tools":
		allowed := map[string]bool{}
		for i, t := range c.Tools {
			if t.Type != "function" {
				return nil, nil, Errorf("tool_choice.tools[%d]: %s tools are run by OpenAI itself and cannot be used with this provider", i, t.Type)
			}
			allowed[t.Name] = true
		}
		var kept []Tool
		for _, t := range tools {
			if allowed[t.Name] {
				kept = append(kept, t)
			}
		}
		switch c.Mode {
		case "auto", "":
			return &ToolChoice{Mode: ToolAuto}, kept, nil
		case "required":
			return &ToolChoice{Mode: ToolRequired}, kept, nil
		}
		return nil, nil, Errorf("tool_choice.mode: %q is not one of auto, required", c.Mode)
	case "":
		return nil, nil, Errorf("tool_choice.type: required")
	}
	return nil, nil, Errorf("tool_choice: %s tools are run by OpenAI itself and cannot be used with this provider", c.Type)
}

func respFormat(f *respTextFormat) (*Format, error) {
	switch f.Type {
	case "text", "":
		return nil, nil
	case "json_object":
		return &Format{Kind: FormatJSON}, nil
	case "json_schema":
		if !respPresent(f.Schema) {
			return nil, Errorf("text.format.schema: required")
		}
		out := &Format{Kind: FormatJSONSchema, Name: f.Name, Schema: f.Schema}
		if f.Strict != nil {
			out.Strict = *f.Strict
		}
		return out, nil
	}
	return nil, Errorf("text.format.type: %q is not one of text, json_object, json_schema", f.Type)
}

// respJSONError names the field a body's JSON got wrong, in JSON's terms
// rather than Go's.
func respJSONError(path string, err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		switch {
		case path != "" && field != "":
			field = path + "." + field
		case field == "":
			field = path
		}
		if field == "" {
			return Errorf("request body: expected %s, got %s", jsonKind(te.Type), te.Value)
		}
		return Errorf("%s: expected %s, got %s", field, jsonKind(te.Type), te.Value)
	}
	if path == "" {
		return Errorf("request body is not valid JSON: %v", err)
	}
	return Errorf("%s: %v", path, err)
}

// Output side.

type respResponse struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	CompletedAt        *int64            `json:"completed_at"`
	Status             string            `json:"status"`
	Background         bool              `json:"background"`
	Error              *struct{}         `json:"error"`
	IncompleteDetails  *respIncomplete   `json:"incomplete_details"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Metadata           map[string]string `json:"metadata"`
	Model              string            `json:"model"`
	Output             []any             `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Reasoning          respReasoningConf `json:"reasoning"`
	Store              bool              `json:"store"`
	Temperature        float64           `json:"temperature"`
	Text               respTextConf      `json:"text"`
	ToolChoice         any               `json:"tool_choice"`
	Tools              []respOutTool     `json:"tools"`
	TopP               float64           `json:"top_p"`
	Truncation         string            `json:"truncation"`
	Usage              *respUsage        `json:"usage"`
}

type respIncomplete struct {
	Reason string `json:"reason"`
}

type respReasoningConf struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

type respTextConf struct {
	Format respTextFormat `json:"format"`
}

type respOutTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      bool            `json:"strict"`
}

type respNamedChoice struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

type respUsage struct {
	InputTokens        int64 `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int64 `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

type respMessageItem struct {
	Type    string           `json:"type"`
	ID      string           `json:"id"`
	Status  string           `json:"status"`
	Role    string           `json:"role"`
	Content []respOutputText `json:"content"`
}

type respOutputText struct {
	Type        string     `json:"type"`
	Text        string     `json:"text"`
	Annotations []struct{} `json:"annotations"`
	Logprobs    []struct{} `json:"logprobs"`
}

type respReasoningItem struct {
	Type    string        `json:"type"`
	ID      string        `json:"id"`
	Summary []respSummary `json:"summary"`
	// EncryptedContent carries a thinking signature (Anthropic, Bedrock,
	// Gemini) to the client, which sends it back with the item next turn.
	EncryptedContent string `json:"encrypted_content,omitempty"`
}

type respCallItem struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

func respNewID(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// respResponseID keeps the provider's id (for log correlation) in
// OpenAI's shape.
func respResponseID(id string) string {
	id = respSanitizeID(id)
	switch {
	case id == "":
		return respNewID("resp_")
	case strings.HasPrefix(id, "resp_"):
		return id
	}
	return "resp_" + id
}

func respSanitizeID(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return -1
	}, id)
}

// respEnvelope is the response object around the output. It echoes what the
// hub kept of the request (req may be nil) and OpenAI's defaults otherwise,
// so SDKs find every field they require.
func respEnvelope(id, model string, created int64, req *Request) *respResponse {
	one := 1.0
	out := &respResponse{
		ID: id, Object: "response", CreatedAt: created, Status: "in_progress",
		Metadata: map[string]string{}, Model: model, Output: []any{},
		ParallelToolCalls: true, Temperature: one, TopP: one,
		Text:       respTextConf{Format: respTextFormat{Type: "text"}},
		ToolChoice: "auto", Tools: []respOutTool{}, Truncation: "disabled",
	}
	if req == nil {
		return out
	}
	if req.MaxTokens > 0 {
		n := req.MaxTokens
		out.MaxOutputTokens = &n
	}
	if req.ParallelToolCalls != nil {
		out.ParallelToolCalls = *req.ParallelToolCalls
	}
	if req.Temperature != nil {
		out.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		out.TopP = *req.TopP
	}
	if c := req.ToolChoice; c != nil {
		switch c.Mode {
		case ToolNone, ToolRequired, ToolAuto:
			out.ToolChoice = c.Mode
		case ToolNamed:
			out.ToolChoice = respNamedChoice{Type: "function", Name: c.Name}
		}
	}
	for _, t := range req.Tools {
		ot := respOutTool{Type: "function", Name: t.Name, Description: t.Description, Parameters: json.RawMessage("null")}
		if len(t.Parameters) > 0 && json.Valid(t.Parameters) {
			ot.Parameters = t.Parameters
		}
		out.Tools = append(out.Tools, ot)
	}
	if f := req.Format; f != nil {
		switch f.Kind {
		case FormatJSON:
			out.Text.Format = respTextFormat{Type: "json_object"}
		case FormatJSONSchema:
			strict := f.Strict
			tf := respTextFormat{Type: "json_schema", Name: f.Name, Strict: &strict}
			if json.Valid(f.Schema) {
				tf.Schema = f.Schema
			}
			out.Text.Format = tf
		}
	}
	if req.Reasoning != nil {
		e := req.Reasoning.EffortOrFromBudget()
		out.Reasoning.Effort = &e
	}
	return out
}

// respFinish sets the final status: OpenAI calls an answer cut by the token
// limit or a content filter incomplete, with the reason.
func respFinish(out *respResponse, f Finish, u *Usage) {
	out.Status = "completed"
	switch f {
	case FinishLength:
		out.Status, out.IncompleteDetails = "incomplete", &respIncomplete{Reason: "max_output_tokens"}
	case FinishContentFilter:
		out.Status, out.IncompleteDetails = "incomplete", &respIncomplete{Reason: "content_filter"}
	}
	now := time.Now().Unix()
	out.CompletedAt = &now
	if u != nil {
		ru := &respUsage{InputTokens: u.Input, OutputTokens: u.Output, TotalTokens: u.Total()}
		ru.InputTokensDetails.CachedTokens = u.CacheRead
		ru.OutputTokensDetails.ReasoningTokens = u.Reasoning
		out.Usage = ru
	}
}

func respReasoning(p Part) *respReasoningItem {
	it := &respReasoningItem{Type: "reasoning", ID: respNewID("rs_"), Summary: []respSummary{}, EncryptedContent: p.Signature}
	if p.Text != "" {
		it.Summary = append(it.Summary, respSummary{Type: "summary_text", Text: p.Text})
	}
	return it
}

func respCall(tc ToolCall) *respCallItem {
	id := tc.ID
	if id == "" {
		id = respNewID("call_")
	}
	args := tc.Arguments
	if args == "" {
		args = "{}"
	}
	return &respCallItem{Type: "function_call", ID: respNewID("fc_"), CallID: id, Name: tc.Name, Arguments: args, Status: "completed"}
}

func (responsesCodec) EncodeResponse(r *Response) ([]byte, error) {
	created := r.Created
	if created == 0 {
		created = time.Now().Unix()
	}
	out := respEnvelope(respResponseID(r.ID), r.Model, created, nil)
	var u *Usage
	if r.UsageSeen {
		u = &r.Usage
	}
	respFinish(out, r.Finish, u)
	msgStatus := "completed"
	if out.Status == "incomplete" {
		msgStatus = "incomplete"
	}
	var msg *respMessageItem
	for _, p := range r.Parts {
		switch p.Kind {
		case PartThinking:
			out.Output = append(out.Output, respReasoning(p))
			msg = nil
		case PartText:
			if msg == nil {
				msg = &respMessageItem{Type: "message", ID: respNewID("msg_"), Status: msgStatus, Role: "assistant",
					Content: []respOutputText{respText("")}}
				out.Output = append(out.Output, msg)
			}
			msg.Content[0].Text += p.Text
		}
	}
	for _, tc := range r.ToolCalls {
		out.Output = append(out.Output, respCall(tc))
	}
	if len(out.Output) == 0 {
		// An empty answer still gets its message, as OpenAI sends one.
		out.Output = append(out.Output, &respMessageItem{Type: "message", ID: respNewID("msg_"), Status: msgStatus,
			Role: "assistant", Content: []respOutputText{respText("")}})
	}
	return json.Marshal(out)
}

func respText(s string) respOutputText {
	return respOutputText{Type: "output_text", Text: s, Annotations: []struct{}{}, Logprobs: []struct{}{}}
}

type respErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func (responsesCodec) EncodeError(status int, kind, msg string) []byte {
	var b respErrorBody
	b.Error.Message = msg
	switch {
	case status == http.StatusUnauthorized:
		b.Error.Type = "authentication_error"
	case status == http.StatusForbidden:
		b.Error.Type = "permission_error"
	case status == http.StatusNotFound:
		b.Error.Type = "not_found_error"
	case status == http.StatusTooManyRequests:
		b.Error.Type = "rate_limit_error"
	case status >= 500:
		b.Error.Type = "server_error"
	default:
		b.Error.Type = "invalid_request_error"
	}
	b.Error.Code = kind
	if kind == "" {
		b.Error.Code = b.Error.Type
	}
	out, _ := json.Marshal(b)
	return out
}

// Streaming.

// respEvent is every stream event this encoder sends; each kind fills its
// own fields. Indexes are pointers because 0 is a value they must show.
type respEvent struct {
	Type           string        `json:"type"`
	SequenceNumber int           `json:"sequence_number"`
	Response       *respResponse `json:"response,omitempty"`
	OutputIndex    *int          `json:"output_index,omitempty"`
	ItemID         string        `json:"item_id,omitempty"`
	ContentIndex   *int          `json:"content_index,omitempty"`
	SummaryIndex   *int          `json:"summary_index,omitempty"`
	Item           any           `json:"item,omitempty"`
	Part           any           `json:"part,omitempty"`
	Delta          *string       `json:"delta,omitempty"`
	Text           *string       `json:"text,omitempty"`
	Arguments      *string       `json:"arguments,omitempty"`
	Logprobs       *[]struct{}   `json:"logprobs,omitempty"`
}

func (responsesCodec) NewEncoder(req *Request) Encoder {
	return &responsesEncoder{req: req, calls: map[int]*respOpenCall{}}
}

// responsesEncoder keeps at most one message or reasoning item open; a
// delta of another kind closes it. Function calls stay open together until
// text, thinking or the end, so providers that interleave argument
// fragments of parallel calls still stream into the right item.
type responsesEncoder struct {
	req       *Request
	seq       int
	started   bool
	resp      *respResponse
	msg       *respMessageItem
	msgIndex  int
	think     *respReasoningItem
	thinkIdx  int
	thinkPart bool
	calls     map[int]*respOpenCall
	openCalls []int
	finish    Finish
	usage     *Usage
	ended     bool
}

type respOpenCall struct {
	item  *respCallItem
	index int
	open  bool
}

func respIntPtr(i int) *int { return &i }

func (e *responsesEncoder) emit(dst []byte, ev *respEvent) []byte {
	ev.SequenceNumber = e.seq
	e.seq++
	data, err := json.Marshal(ev)
	if err != nil {
		return dst
	}
	dst = append(dst, "event: "...)
	dst = append(dst, ev.Type...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}

func (e *responsesEncoder) start(dst []byte, d *Delta) []byte {
	e.started = true
	var id, model string
	if d != nil {
		id, model = d.ID, d.Model
	}
	if model == "" && e.req != nil {
		model = e.req.Model
	}
	e.resp = respEnvelope(respResponseID(id), model, time.Now().Unix(), e.req)
	snap := *e.resp
	dst = e.emit(dst, &respEvent{Type: "response.created", Response: &snap})
	return e.emit(dst, &respEvent{Type: "response.in_progress", Response: &snap})
}

func (e *responsesEncoder) Delta(dst []byte, d *Delta) []byte {
	if e.ended || d == nil {
		return dst
	}
	if !e.started {
		dst = e.start(dst, d)
	} else if d.Model != "" {
		e.resp.Model = d.Model
	}
	if d.Thinking != "" {
		dst = e.thinking(dst, d.Thinking)
	}
	if d.Signature != "" {
		if e.think == nil {
			dst = e.openThinking(dst)
		}
		e.think.EncryptedContent = d.Signature
		dst = e.closeThinking(dst)
	}
	if d.Text != "" {
		dst = e.text(dst, d.Text)
	}
	if d.Tool != nil {
		dst = e.tool(dst, d.Tool)
	}
	if d.Finish != "" {
		e.finish = d.Finish
	}
	if d.Usage != nil {
		u := *d.Usage
		e.usage = &u
	}
	return dst
}

func (e *responsesEncoder) add(dst []byte, item any) ([]byte, int) {
	idx := len(e.resp.Output)
	e.resp.Output = append(e.resp.Output, item)
	return e.emit(dst, &respEvent{Type: "response.output_item.added", OutputIndex: respIntPtr(idx), Item: item}), idx
}

func (e *responsesEncoder) done(dst []byte, idx int, item any) []byte {
	return e.emit(dst, &respEvent{Type: "response.output_item.done", OutputIndex: respIntPtr(idx), Item: item})
}

func (e *responsesEncoder) openThinking(dst []byte) []byte {
	dst = e.closeText(dst)
	dst = e.closeCalls(dst)
	e.think = &respReasoningItem{Type: "reasoning", ID: respNewID("rs_"), Summary: []respSummary{}}
	snap := *e.think
	dst, e.thinkIdx = e.add(dst, &snap)
	return dst
}

func (e *responsesEncoder) thinking(dst []byte, s string) []byte {
	if e.think == nil {
		dst = e.openThinking(dst)
	}
	if !e.thinkPart {
		e.thinkPart = true
		e.think.Summary = append(e.think.Summary, respSummary{Type: "summary_text"})
		dst = e.emit(dst, &respEvent{Type: "response.reasoning_summary_part.added", OutputIndex: respIntPtr(e.thinkIdx),
			ItemID: e.think.ID, SummaryIndex: respIntPtr(0), Part: respSummary{Type: "summary_text", Text: ""}})
	}
	e.think.Summary[0].Text += s
	return e.emit(dst, &respEvent{Type: "response.reasoning_summary_text.delta", OutputIndex: respIntPtr(e.thinkIdx),
		ItemID: e.think.ID, SummaryIndex: respIntPtr(0), Delta: &s})
}

func (e *responsesEncoder) closeThinking(dst []byte) []byte {
	if e.think == nil {
		return dst
	}
	it := e.think
	if e.thinkPart {
		text := it.Summary[0].Text
		dst = e.emit(dst, &respEvent{Type: "response.reasoning_summary_text.done", OutputIndex: respIntPtr(e.thinkIdx),
			ItemID: it.ID, SummaryIndex: respIntPtr(0), Text: &text})
		dst = e.emit(dst, &respEvent{Type: "response.reasoning_summary_part.done", OutputIndex: respIntPtr(e.thinkIdx),
			ItemID: it.ID, SummaryIndex: respIntPtr(0), Part: it.Summary[0]})
	}
	e.resp.Output[e.thinkIdx] = it
	dst = e.done(dst, e.thinkIdx, it)
	e.think, e.thinkPart = nil, false
	return dst
}

func (e *responsesEncoder) text(dst []byte, s string) []byte {
	if e.msg == nil {
		dst = e.closeThinking(dst)
		dst = e.closeCalls(dst)
		e.msg = &respMessageItem{Type: "message", ID: respNewID("msg_"), Status: "in_progress", Role: "assistant", Content: []respOutputText{}}
		snap := *e.msg
		dst, e.msgIndex = e.add(dst, &snap)
		e.msg.Content = append(e.msg.Content, respText(""))
		dst = e.emit(dst, &respEvent{Type: "response.content_part.added", OutputIndex: respIntPtr(e.msgIndex),
			ItemID: e.msg.ID, ContentIndex: respIntPtr(0), Part: respText("")})
	}
	e.msg.Content[0].Text += s
	return e.emit(dst, &respEvent{Type: "response.output_text.delta", OutputIndex: respIntPtr(e.msgIndex),
		ItemID: e.msg.ID, ContentIndex: respIntPtr(0), Delta: &s, Logprobs: &[]struct{}{}})
}

func (e *responsesEncoder) closeText(dst []byte) []byte {
	if e.msg == nil {
		return dst
	}
	m := e.msg
	text := m.Content[0].Text
	dst = e.emit(dst, &respEvent{Type: "response.output_text.done", OutputIndex: respIntPtr(e.msgIndex),
		ItemID: m.ID, ContentIndex: respIntPtr(0), Text: &text, Logprobs: &[]struct{}{}})
	dst = e.emit(dst, &respEvent{Type: "response.content_part.done", OutputIndex: respIntPtr(e.msgIndex),
		ItemID: m.ID, ContentIndex: respIntPtr(0), Part: m.Content[0]})
	m.Status = "completed"
	if f := e.finish; f == FinishLength || f == FinishContentFilter {
		m.Status = "incomplete"
	}
	e.resp.Output[e.msgIndex] = m
	dst = e.done(dst, e.msgIndex, m)
	e.msg = nil
	return dst
}

func (e *responsesEncoder) tool(dst []byte, t *ToolDelta) []byte {
	c := e.calls[t.Index]
	if c == nil {
		dst = e.closeThinking(dst)
		dst = e.closeText(dst)
		id := t.ID
		if id == "" {
			id = respNewID("call_")
		}
		c = &respOpenCall{item: &respCallItem{Type: "function_call", ID: respNewID("fc_"), CallID: id, Name: t.Name, Status: "in_progress"}, open: true}
		e.calls[t.Index] = c
		e.openCalls = append(e.openCalls, t.Index)
		snap := *c.item
		dst, c.index = e.add(dst, &snap)
	}
	if t.Arguments == "" {
		return dst
	}
	c.item.Arguments += t.Arguments
	if !c.open {
		// The item is already done: its fragment can only reach the final
		// response.
		return dst
	}
	args := t.Arguments
	return e.emit(dst, &respEvent{Type: "response.function_call_arguments.delta", OutputIndex: respIntPtr(c.index),
		ItemID: c.item.ID, Delta: &args})
}

func (e *responsesEncoder) closeCalls(dst []byte) []byte {
	for _, k := range e.openCalls {
		c := e.calls[k]
		c.open = false
		if c.item.Arguments == "" {
			c.item.Arguments = "{}"
		}
		args := c.item.Arguments
		dst = e.emit(dst, &respEvent{Type: "response.function_call_arguments.done", OutputIndex: respIntPtr(c.index),
			ItemID: c.item.ID, Arguments: &args})
		c.item.Status = "completed"
		snap := *c.item
		e.resp.Output[c.index] = &snap
		dst = e.done(dst, c.index, &snap)
	}
	e.openCalls = e.openCalls[:0]
	return dst
}

func (e *responsesEncoder) End(dst []byte) []byte {
	if e.ended {
		return dst
	}
	if !e.started {
		dst = e.start(dst, nil)
	}
	e.ended = true
	dst = e.closeThinking(dst)
	dst = e.closeText(dst)
	dst = e.closeCalls(dst)
	for _, c := range e.calls {
		// Fragments that came after an item was done are in the final
		// object at least.
		if c.item.Arguments == "" {
			c.item.Arguments = "{}"
		}
		snap := *c.item
		snap.Status = "completed"
		e.resp.Output[c.index] = &snap
	}
	respFinish(e.resp, e.finish, e.usage)
	typ := "response.completed"
	if e.resp.Status == "incomplete" {
		typ = "response.incomplete"
	}
	return e.emit(dst, &respEvent{Type: typ, Response: e.resp})
}

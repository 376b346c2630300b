package protocols

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Anthropic is the Anthropic Messages API (POST /v1/messages), spoken by
// clients (Claude Code, the Anthropic SDKs) and by providers (Anthropic,
// and Anthropic-compatible endpoints).
//
// Reference: https://docs.anthropic.com/en/api/messages and
// https://docs.anthropic.com/en/docs/build-with-claude/streaming.
var Anthropic = anthropicCodec{}

type anthropicCodec struct{}

var (
	_ Client   = Anthropic
	_ Upstream = Anthropic
)

func (anthropicCodec) Protocol() Protocol { return Messages }

func (anthropicCodec) StreamContentType() string { return "text/event-stream" }

// anthDefaultMaxTokens is sent when the hub request sets no bound: the API
// requires max_tokens, and 4096 fits every current model's output limit.
const anthDefaultMaxTokens = 4096

// anthMinBudget is the smallest thinking budget the API accepts.
const anthMinBudget = 1024

// anthJSONInstruction stands in for OpenAI's json_object mode, which has no
// Anthropic field: only a schema can be enforced, so without one the model
// is asked in the system prompt.
const anthJSONInstruction = "Respond with a single valid JSON object and nothing else: no prose, no Markdown code fences."

// Wire types. Decoding and encoding share them where the optional fields
// are the same; content blocks differ (the API rejects a thinking block
// without "thinking" or a tool_use block without "input"), so blocks are
// written through one struct per type.

type anthRequest struct {
	Model         string            `json:"model"`
	MaxTokens     int               `json:"max_tokens"`
	System        json.RawMessage   `json:"system"`
	Messages      json.RawMessage   `json:"messages"`
	StopSequences []string          `json:"stop_sequences"`
	Temperature   *float64          `json:"temperature"`
	TopP          *float64          `json:"top_p"`
	TopK          *int              `json:"top_k"`
	Stream        bool              `json:"stream"`
	Tools         []anthTool        `json:"tools"`
	ToolChoice    *anthToolChoice   `json:"tool_choice"`
	Thinking      *anthThinking     `json:"thinking"`
	Metadata      *anthMetadata     `json:"metadata"`
	OutputFormat  *anthOutputFormat `json:"output_format"`
	OutputConfig  *anthOutputConfig `json:"output_config"`
}

type anthRequestOut struct {
	Model         string            `json:"model"`
	MaxTokens     int               `json:"max_tokens"`
	System        string            `json:"system,omitempty"`
	Messages      []anthMessageOut  `json:"messages"`
	StopSequences []string          `json:"stop_sequences,omitempty"`
	Temperature   *float64          `json:"temperature,omitempty"`
	TopP          *float64          `json:"top_p,omitempty"`
	TopK          *int              `json:"top_k,omitempty"`
	Stream        bool              `json:"stream,omitempty"`
	Tools         []anthTool        `json:"tools,omitempty"`
	ToolChoice    *anthToolChoice   `json:"tool_choice,omitempty"`
	Thinking      *anthThinking     `json:"thinking,omitempty"`
	Metadata      *anthMetadata     `json:"metadata,omitempty"`
	OutputConfig  *anthOutputConfig `json:"output_config,omitempty"`
}

type anthMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthMessageOut struct {
	Role    string `json:"role"`
	Content []any  `json:"content"`
	results int    // leading tool_result blocks of Content
}

type anthTool struct {
	Type        string          `json:"type,omitempty"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anthThinking struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens,omitempty"`
}

type anthMetadata struct {
	UserID string `json:"user_id,omitempty"`
}

type anthOutputFormat struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema,omitempty"`
}

type anthOutputConfig struct {
	Format *anthOutputFormat `json:"format,omitempty"`
	Effort string            `json:"effort,omitempty"`
}

// anthBlock is any content block, as read.
type anthBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	Signature string          `json:"signature"`
	Source    *anthSource     `json:"source"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

type anthSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthTextOut struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthThinkingOut struct {
	Type      string `json:"type"`
	Thinking  string `json:"thinking"`
	Signature string `json:"signature"`
}

type anthImageOut struct {
	Type   string     `json:"type"`
	Source anthSource `json:"source"`
}

type anthToolUseOut struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type anthToolResultOut struct {
	Type      string `json:"type"`
	ToolUseID string `json:"tool_use_id"`
	Content   any    `json:"content,omitempty"`
	IsError   bool   `json:"is_error,omitempty"`
}

type anthResponse struct {
	ID           string      `json:"id"`
	Type         string      `json:"type"`
	Model        string      `json:"model"`
	Content      []anthBlock `json:"content"`
	StopReason   string      `json:"stop_reason"`
	StopSequence string      `json:"stop_sequence"`
	Usage        *anthUsage  `json:"usage"`
	Error        *anthError  `json:"error"`
}

type anthResponseOut struct {
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	Role         string       `json:"role"`
	Model        string       `json:"model"`
	Content      []any        `json:"content"`
	StopReason   string       `json:"stop_reason"`
	StopSequence *string      `json:"stop_sequence"`
	Usage        anthUsageOut `json:"usage"`
}

// anthUsage has pointers because a message_delta's usage names only the
// counts it reports; the absent ones keep message_start's values.
type anthUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
	OutputTokensDetails      *struct {
		ThinkingTokens *int64 `json:"thinking_tokens"`
	} `json:"output_tokens_details"`
}

type anthUsageOut struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
}

type anthError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// DecodeRequest implements [Client.DecodeRequest].
func (anthropicCodec) DecodeRequest(body []byte) (*Request, error) {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		if !json.Valid(body) {
			return nil, Errorf("request body is not valid JSON")
		}
		return nil, Errorf("request body must be a JSON object")
	}
	var a anthRequest
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, anthBadJSON("", err)
	}
	if anthIsNull(a.Messages) {
		return nil, Errorf("messages: field required")
	}
	var msgs []anthMessage
	if err := json.Unmarshal(a.Messages, &msgs); err != nil {
		return nil, anthBadJSON("messages", err)
	}
	if len(msgs) == 0 {
		return nil, Errorf("messages: at least one message is required")
	}
	r := &Request{
		Model:       a.Model,
		MaxTokens:   a.MaxTokens,
		Stop:        a.StopSequences,
		Temperature: a.Temperature,
		TopP:        a.TopP,
		TopK:        a.TopK,
		Stream:      a.Stream,
	}
	var err error
	if r.Messages, err = anthDecodeSystem(r.Messages, a.System); err != nil {
		return nil, err
	}
	for i, m := range msgs {
		if r.Messages, err = anthDecodeMessage(r.Messages, i, m); err != nil {
			return nil, err
		}
	}
	for i, t := range a.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, Errorf("tools[%d]: server tool type %q is not supported by this gateway; only custom tools can be translated", i, t.Type)
		}
		if t.Name == "" {
			return nil, Errorf("tools[%d].name: field required", i)
		}
		tool := Tool{Name: t.Name, Description: t.Description}
		if !anthIsNull(t.InputSchema) {
			if t.InputSchema[0] != '{' {
				return nil, Errorf("tools[%d].input_schema: must be a JSON Schema object", i)
			}
			tool.Parameters = t.InputSchema
		}
		r.Tools = append(r.Tools, tool)
	}
	if tc := a.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto":
			r.ToolChoice = &ToolChoice{Mode: ToolAuto}
		case "any":
			r.ToolChoice = &ToolChoice{Mode: ToolRequired}
		case "tool":
			if tc.Name == "" {
				return nil, Errorf("tool_choice.name: field required when tool_choice.type is \"tool\"")
			}
			r.ToolChoice = &ToolChoice{Mode: ToolNamed, Name: tc.Name}
		case "none":
			r.ToolChoice = &ToolChoice{Mode: ToolNone}
		default:
			return nil, Errorf("tool_choice.type: %q is not one of auto, any, tool, none", tc.Type)
		}
		if tc.DisableParallelToolUse {
			no := false
			r.ParallelToolCalls = &no
		}
	}
	if th := a.Thinking; th != nil {
		switch th.Type {
		case "enabled":
			if th.BudgetTokens <= 0 {
				return nil, Errorf("thinking.budget_tokens: field required when thinking.type is \"enabled\"")
			}
			r.Reasoning = &Reasoning{BudgetTokens: th.BudgetTokens}
		case "adaptive":
			// Adaptive thinking lets the model pick its budget from
			// output_config.effort, whose default is high.
			effort := "high"
			if a.OutputConfig != nil {
				switch a.OutputConfig.Effort {
				case "low", "medium":
					effort = a.OutputConfig.Effort
				}
			}
			r.Reasoning = &Reasoning{Effort: effort}
		case "disabled", "":
		default:
			return nil, Errorf("thinking.type: %q is not one of enabled, adaptive, disabled", th.Type)
		}
	}
	if a.Metadata != nil {
		r.User = a.Metadata.UserID
	}
	f, field := a.OutputFormat, "output_format"
	if a.OutputConfig != nil && a.OutputConfig.Format != nil {
		f, field = a.OutputConfig.Format, "output_config.format"
	}
	if f != nil {
		if f.Type != "json_schema" {
			return nil, Errorf("%s.type: %q is not supported; use \"json_schema\"", field, f.Type)
		}
		if anthIsNull(f.Schema) {
			return nil, Errorf("%s.schema: field required", field)
		}
		// Anthropic's schemas are always enforced and carry no name; OpenAI
		// requires a name, so one is made up.
		r.Format = &Format{Kind: FormatJSONSchema, Name: "response", Schema: f.Schema, Strict: true}
	}
	return r, nil
}

func anthDecodeSystem(dst []Message, raw json.RawMessage) ([]Message, error) {
	if anthIsNull(raw) {
		return dst, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, anthBadJSON("system", err)
		}
		if s == "" {
			return dst, nil
		}
		return append(dst, Message{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: s}}}), nil
	}
	var blocks []anthBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, Errorf("system: must be a string or an array of text blocks")
	}
	for i, b := range blocks {
		if b.Type != "text" {
			return nil, Errorf("system[%d].type: %q is not supported; system blocks must be text", i, b.Type)
		}
		dst = append(dst, Message{Role: RoleSystem, Parts: []Part{{Kind: PartText, Text: b.Text}}})
	}
	return dst, nil
}

// anthDecodeMessage appends the hub messages turn i stands for: one, or for
// a user turn with tool results, one RoleTool message per result first, as
// OpenAI wants tool answers right after the assistant's calls.
func anthDecodeMessage(dst []Message, i int, m anthMessage) ([]Message, error) {
	if m.Role != RoleUser && m.Role != RoleAssistant {
		return nil, Errorf("messages[%d].role: must be \"user\" or \"assistant\", got %q", i, m.Role)
	}
	if anthIsNull(m.Content) {
		return nil, Errorf("messages[%d].content: field required", i)
	}
	msg := Message{Role: m.Role}
	if m.Content[0] == '"' {
		var s string
		if err := json.Unmarshal(m.Content, &s); err != nil {
			return nil, anthBadJSON(fmt.Sprintf("messages[%d].content", i), err)
		}
		msg.Parts = []Part{{Kind: PartText, Text: s}}
		return append(dst, msg), nil
	}
	var blocks []anthBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		if m.Content[0] != '[' {
			return nil, Errorf("messages[%d].content: must be a string or an array of content blocks", i)
		}
		return nil, anthBadJSON(fmt.Sprintf("messages[%d].content", i), err)
	}
	for j, b := range blocks {
		where := fmt.Sprintf("messages[%d].content[%d]", i, j)
		switch b.Type {
		case "text":
			msg.Parts = append(msg.Parts, Part{Kind: PartText, Text: b.Text})
		case "image":
			p, err := anthImagePart(b.Source, where)
			if err != nil {
				return nil, err
			}
			msg.Parts = append(msg.Parts, p)
		case "thinking":
			if m.Role == RoleAssistant {
				msg.Parts = append(msg.Parts, Part{Kind: PartThinking, Text: b.Thinking, Signature: b.Signature})
			}
		case "redacted_thinking":
			// Its encrypted data means something only to Anthropic, and the
			// hub has no place for it.
		case "tool_use":
			if m.Role != RoleAssistant {
				return nil, Errorf("%s: tool_use blocks belong in assistant turns", where)
			}
			msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: b.ID, Name: b.Name, Arguments: anthArguments(b.Input)})
		case "tool_result":
			if m.Role != RoleUser {
				return nil, Errorf("%s: tool_result blocks belong in user turns", where)
			}
			parts, err := anthToolResultParts(b.Content, where)
			if err != nil {
				return nil, err
			}
			dst = append(dst, Message{Role: RoleTool, ToolCallID: b.ToolUseID, Parts: parts, ToolError: b.IsError})
		default:
			return nil, Errorf("%s.type: content block type %q cannot be translated", where, b.Type)
		}
	}
	if len(msg.Parts) == 0 && len(msg.ToolCalls) == 0 {
		return dst, nil
	}
	return append(dst, msg), nil
}

func anthImagePart(s *anthSource, where string) (Part, error) {
	if s == nil {
		return Part{}, Errorf("%s.source: field required", where)
	}
	switch s.Type {
	case "base64":
		if s.Data == "" {
			return Part{}, Errorf("%s.source.data: field required", where)
		}
		return Part{Kind: PartImage, MediaType: s.MediaType, Data: s.Data}, nil
	case "url":
		if s.URL == "" {
			return Part{}, Errorf("%s.source.url: field required", where)
		}
		return Part{Kind: PartImage, URL: s.URL}, nil
	}
	return Part{}, Errorf("%s.source.type: %q is not supported; use \"base64\" or \"url\"", where, s.Type)
}

func anthToolResultParts(raw json.RawMessage, where string) ([]Part, error) {
	if anthIsNull(raw) {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, anthBadJSON(where+".content", err)
		}
		return []Part{{Kind: PartText, Text: s}}, nil
	}
	var blocks []anthBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, Errorf("%s.content: must be a string or an array of content blocks", where)
	}
	parts := make([]Part, 0, len(blocks))
	for k, b := range blocks {
		at := fmt.Sprintf("%s.content[%d]", where, k)
		switch b.Type {
		case "text":
			parts = append(parts, Part{Kind: PartText, Text: b.Text})
		case "image":
			p, err := anthImagePart(b.Source, at)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		default:
			return nil, Errorf("%s.type: content block type %q cannot be translated in a tool result", at, b.Type)
		}
	}
	return parts, nil
}

// anthArguments is a tool_use input as the hub's arguments text: compact,
// and "{}" when absent.
func anthArguments(input json.RawMessage) string {
	if anthIsNull(input) {
		return "{}"
	}
	var b bytes.Buffer
	if json.Compact(&b, input) != nil {
		return string(input)
	}
	return b.String()
}

// anthInput is the hub's arguments text as a tool_use input: the API takes
// only an object, so anything else (a cut-off stream's half object, "")
// becomes {}.
func anthInput(args string) json.RawMessage {
	s := strings.TrimSpace(args)
	if s == "" || s[0] != '{' || !json.Valid([]byte(s)) {
		return json.RawMessage("{}")
	}
	return json.RawMessage(s)
}

func anthIsNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// anthBadJSON turns a json error into a 400 naming the field.
func anthBadJSON(field string, err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := field
		if te.Field != "" {
			if path != "" {
				path += "."
			}
			path += te.Field
		}
		if path == "" {
			path = "request body"
		}
		return Errorf("%s: expected %s, got %s", path, jsonKind(te.Type), te.Value)
	}
	if field == "" {
		return Errorf("request body is not valid JSON: %v", err)
	}
	return Errorf("%s: %v", field, err)
}

// EncodeRequest implements [Upstream.EncodeRequest].
func (anthropicCodec) EncodeRequest(r *Request) ([]byte, error) {
	out := anthRequestOut{
		Model:       r.Model,
		Stream:      r.Stream,
		Temperature: r.Temperature,
		TopP:        r.TopP,
		TopK:        r.TopK,
	}
	// OpenAI's temperature goes to 2, Anthropic's to 1: clamping keeps a
	// hot request hot instead of refused.
	if t := r.Temperature; t != nil && (*t > 1 || *t < 0) {
		c := min(max(*t, 0), 1)
		out.Temperature = &c
	}
	msgs, system := anthEncodeMessages(r.Messages)
	if len(msgs) == 0 {
		// The API would refuse it the same way, after a round trip.
		return nil, Errorf("messages: no message with content to send")
	}
	out.Messages = msgs
	if f := r.Format; f != nil {
		switch {
		case f.Kind == FormatJSONSchema && !anthIsNull(f.Schema):
			if !json.Valid(f.Schema) {
				return nil, Errorf("response format %q: schema is not valid JSON", f.Name)
			}
			out.OutputConfig = &anthOutputConfig{Format: &anthOutputFormat{Type: "json_schema", Schema: f.Schema}}
		case f.Kind == FormatJSON, f.Kind == FormatJSONSchema:
			system = append(system, anthJSONInstruction)
		}
	}
	out.System = strings.Join(system, "\n\n")
	for _, s := range r.Stop {
		// The API refuses whitespace-only stop sequences, which OpenAI
		// clients send ("\n").
		if strings.TrimSpace(s) != "" {
			out.StopSequences = append(out.StopSequences, s)
		}
	}
	for i, t := range r.Tools {
		schema := t.Parameters
		if anthIsNull(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		} else if !json.Valid(schema) {
			return nil, Errorf("tools[%d] %q: parameters are not valid JSON", i, t.Name)
		}
		out.Tools = append(out.Tools, anthTool{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	if len(out.Tools) > 0 {
		if tc := r.ToolChoice; tc != nil {
			switch tc.Mode {
			case ToolAuto:
				out.ToolChoice = &anthToolChoice{Type: "auto"}
			case ToolRequired:
				out.ToolChoice = &anthToolChoice{Type: "any"}
			case ToolNamed:
				if tc.Name == "" {
					return nil, Errorf("tool_choice: a named tool choice needs the tool's name")
				}
				out.ToolChoice = &anthToolChoice{Type: "tool", Name: tc.Name}
			case ToolNone:
				out.ToolChoice = &anthToolChoice{Type: "none"}
			}
		}
		if p := r.ParallelToolCalls; p != nil && !*p {
			if out.ToolChoice == nil {
				out.ToolChoice = &anthToolChoice{Type: "auto"}
			}
			if out.ToolChoice.Type != "none" {
				out.ToolChoice.DisableParallelToolUse = true
			}
		}
	}
	out.MaxTokens = r.MaxTokens
	if out.MaxTokens <= 0 {
		out.MaxTokens = anthDefaultMaxTokens
	}
	if budget := anthBudget(r, &out); budget > 0 {
		out.Thinking = &anthThinking{Type: "enabled", BudgetTokens: budget}
		if out.MaxTokens <= budget {
			out.MaxTokens = budget + anthDefaultMaxTokens
		}
		// With thinking on the API refuses temperature and top_k, and
		// top_p below 0.95.
		out.Temperature, out.TopK = nil, nil
		if out.TopP != nil && *out.TopP < 0.95 {
			out.TopP = nil
		}
	}
	if r.User != "" {
		out.Metadata = &anthMetadata{UserID: r.User}
	}
	return json.Marshal(out)
}

// anthBudget is the thinking budget to send, 0 for none. Thinking is left
// off where the API would refuse the whole call over it: with a forced tool
// choice, and when the last assistant turn calls tools without starting
// with a signed thinking block (a history from a client that dropped the
// thinking, e.g. an OpenAI chat client in a tool loop).
func anthBudget(r *Request, out *anthRequestOut) int {
	if r.Reasoning == nil {
		return 0
	}
	budget := r.Reasoning.Budget()
	if budget <= 0 {
		return 0
	}
	if tc := out.ToolChoice; tc != nil && (tc.Type == "any" || tc.Type == "tool") {
		return 0
	}
	for i := len(out.Messages) - 1; i >= 0; i-- {
		m := out.Messages[i]
		if m.Role != RoleAssistant {
			continue
		}
		hasTool := false
		for _, b := range m.Content {
			if _, ok := b.(anthToolUseOut); ok {
				hasTool = true
			}
		}
		if _, thinking := m.Content[0].(anthThinkingOut); hasTool && !thinking {
			return 0
		}
		break
	}
	return max(budget, anthMinBudget)
}

// anthEncodeMessages turns hub messages into alternating Anthropic turns,
// and returns the system prompts apart.
func anthEncodeMessages(msgs []Message) ([]anthMessageOut, []string) {
	var (
		turns  []anthMessageOut
		system []string
		ids    anthToolIDs
	)
	for _, m := range msgs {
		switch m.Role {
		case RoleSystem:
			for _, p := range m.Parts {
				if p.Kind == PartText && p.Text != "" {
					system = append(system, p.Text)
				}
			}
		case RoleTool:
			res := anthToolResultOut{Type: "tool_result", ToolUseID: ids.result(m.ToolCallID), IsError: m.ToolError}
			res.Content = anthResultContent(m.Parts)
			// Results go first in a user turn: the API refuses text before
			// them.
			if n := len(turns); n > 0 && turns[n-1].Role == RoleUser {
				t := &turns[n-1]
				t.Content = append(t.Content, nil)
				copy(t.Content[t.results+1:], t.Content[t.results:])
				t.Content[t.results] = res
				t.results++
				continue
			}
			turns = append(turns, anthMessageOut{Role: RoleUser, Content: []any{res}, results: 1})
		case RoleAssistant:
			var blocks []any
			for _, p := range m.Parts {
				switch p.Kind {
				case PartThinking:
					// Anthropic refuses thinking it did not sign.
					if p.Signature != "" {
						blocks = append(blocks, anthThinkingOut{Type: "thinking", Thinking: p.Text, Signature: p.Signature})
					}
				default:
					if b := anthPartBlock(p); b != nil {
						blocks = append(blocks, b)
					}
				}
			}
			for _, c := range m.ToolCalls {
				blocks = append(blocks, anthToolUseOut{Type: "tool_use", ID: ids.call(c.ID), Name: c.Name, Input: anthInput(c.Arguments)})
			}
			turns = anthAppendTurn(turns, RoleAssistant, blocks)
		default:
			var blocks []any
			for _, p := range m.Parts {
				if b := anthPartBlock(p); b != nil {
					blocks = append(blocks, b)
				}
			}
			turns = anthAppendTurn(turns, RoleUser, blocks)
		}
	}
	return turns, system
}

// anthAppendTurn merges consecutive turns of one role, which the API
// would otherwise refuse or merge with no separator. A turn with no blocks
// is dropped: the API refuses empty content.
func anthAppendTurn(turns []anthMessageOut, role string, blocks []any) []anthMessageOut {
	if len(blocks) == 0 {
		return turns
	}
	if n := len(turns); n > 0 && turns[n-1].Role == role {
		turns[n-1].Content = append(turns[n-1].Content, blocks...)
		return turns
	}
	return append(turns, anthMessageOut{Role: role, Content: blocks})
}

// anthPartBlock is a text or image part as a block; nil for an empty text
// (refused by the API) and for thinking outside assistant turns.
func anthPartBlock(p Part) any {
	switch p.Kind {
	case PartText:
		if p.Text != "" {
			return anthTextOut{Type: "text", Text: p.Text}
		}
	case PartImage:
		if p.URL != "" {
			return anthImageOut{Type: "image", Source: anthSource{Type: "url", URL: p.URL}}
		}
		return anthImageOut{Type: "image", Source: anthSource{Type: "base64", MediaType: p.MediaType, Data: p.Data}}
	}
	return nil
}

func anthResultContent(parts []Part) any {
	if len(parts) == 1 && parts[0].Kind == PartText {
		if parts[0].Text == "" {
			return nil
		}
		return parts[0].Text
	}
	var blocks []any
	for _, p := range parts {
		if b := anthPartBlock(p); b != nil {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		return nil
	}
	return blocks
}

// anthToolIDs keeps tool_use ids within what the API accepts
// (^[a-zA-Z0-9_-]+$): other providers' ids may hold other characters, or
// be missing (Gemini matches results to calls by order); a missing one is
// made up and handed to the next result that names none.
type anthToolIDs struct {
	made    int
	pending []string
}

func (t *anthToolIDs) call(id string) string {
	if id != "" {
		return anthSafeID(id)
	}
	t.made++
	id = "toolu_gw" + strconv.Itoa(t.made)
	t.pending = append(t.pending, id)
	return id
}

func (t *anthToolIDs) result(id string) string {
	if id != "" {
		return anthSafeID(id)
	}
	if len(t.pending) == 0 {
		return "toolu_unknown"
	}
	id = t.pending[0]
	t.pending = t.pending[1:]
	return id
}

func anthSafeID(id string) string {
	ok := true
	for i := 0; i < len(id); i++ {
		if !anthIDByte(id[i]) {
			ok = false
			break
		}
	}
	if ok {
		return id
	}
	b := []byte(id)
	for i, c := range b {
		if !anthIDByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func anthIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// DecodeResponse implements [Upstream.DecodeResponse].
func (anthropicCodec) DecodeResponse(body []byte) (*Response, error) {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
		return nil, errors.New("anthropic answer is not a JSON object")
	}
	var a anthResponse
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("anthropic answer: %w", err)
	}
	if a.Type == "error" || a.Error != nil {
		var e anthError
		if a.Error != nil {
			e = *a.Error
		}
		return nil, anthAPIError(e)
	}
	r := &Response{ID: a.ID, Model: a.Model, Finish: anthFinish(a.StopReason)}
	if a.StopReason == "stop_sequence" {
		r.StopSequence = a.StopSequence
	}
	for _, b := range a.Content {
		switch b.Type {
		case "text":
			r.Parts = append(r.Parts, Part{Kind: PartText, Text: b.Text})
		case "thinking":
			r.Parts = append(r.Parts, Part{Kind: PartThinking, Text: b.Thinking, Signature: b.Signature})
		case "tool_use":
			r.ToolCalls = append(r.ToolCalls, ToolCall{ID: b.ID, Name: b.Name, Arguments: anthArguments(b.Input)})
		}
	}
	if a.Usage != nil {
		var u anthUsageSum
		u.merge(a.Usage)
		r.Usage, r.UsageSeen = u.hub(), true
	}
	return r, nil
}

// anthFinish maps a stop_reason. pause_turn (a server tool's long turn
// paused) has no OpenAI counterpart; the answer so far is complete.
func anthFinish(reason string) Finish {
	switch reason {
	case "end_turn", "stop_sequence", "pause_turn":
		return FinishStop
	case "max_tokens", "model_context_window_exceeded":
		return FinishLength
	case "tool_use":
		return FinishToolCalls
	case "refusal":
		return FinishContentFilter
	case "":
		return ""
	}
	return FinishStop
}

// anthStopReason maps a finish back. Some providers say "stop" for an
// answer that calls tools; Anthropic clients loop on tool_use, so calls
// win.
func anthStopReason(f Finish, stopSeq string, calls bool) string {
	switch f {
	case FinishLength:
		return "max_tokens"
	case FinishContentFilter:
		return "refusal"
	case FinishToolCalls:
		return "tool_use"
	}
	switch {
	case calls:
		return "tool_use"
	case stopSeq != "":
		return "stop_sequence"
	}
	return "end_turn"
}

// anthUsageSum is an answer's usage in Anthropic's terms, merged from
// every report of it.
type anthUsageSum struct {
	in, out, cacheRead, cacheWrite, thinking int64
}

func (s *anthUsageSum) merge(u *anthUsage) {
	if u.InputTokens != nil {
		s.in = *u.InputTokens
	}
	if u.OutputTokens != nil {
		s.out = *u.OutputTokens
	}
	if u.CacheReadInputTokens != nil {
		s.cacheRead = *u.CacheReadInputTokens
	}
	if u.CacheCreationInputTokens != nil {
		s.cacheWrite = *u.CacheCreationInputTokens
	}
	if d := u.OutputTokensDetails; d != nil && d.ThinkingTokens != nil {
		s.thinking = *d.ThinkingTokens
	}
}

func (s *anthUsageSum) hub() Usage {
	return Usage{
		Input:      s.in + s.cacheRead + s.cacheWrite,
		Output:     s.out,
		CacheRead:  s.cacheRead,
		CacheWrite: s.cacheWrite,
		Reasoning:  s.thinking,
	}
}

// anthUncachedInput is Anthropic's input_tokens, which leaves out the
// cached tokens the hub counts in Input.
func anthUncachedInput(u Usage) int64 {
	return max(u.Input-u.CacheRead-u.CacheWrite, 0)
}

// EncodeResponse implements [Client.EncodeResponse].
func (anthropicCodec) EncodeResponse(r *Response) ([]byte, error) {
	out := anthResponseOut{
		ID:         anthMessageID(r.ID),
		Type:       "message",
		Role:       RoleAssistant,
		Model:      r.Model,
		Content:    make([]any, 0, len(r.Parts)+len(r.ToolCalls)),
		StopReason: anthStopReason(r.Finish, r.StopSequence, len(r.ToolCalls) > 0),
		Usage: anthUsageOut{
			InputTokens:              anthUncachedInput(r.Usage),
			OutputTokens:             r.Usage.Output,
			CacheReadInputTokens:     r.Usage.CacheRead,
			CacheCreationInputTokens: r.Usage.CacheWrite,
		},
	}
	if out.StopReason == "stop_sequence" {
		out.StopSequence = &r.StopSequence
	}
	// Anthropic answers put thinking before text.
	for _, p := range r.Parts {
		if p.Kind == PartThinking {
			out.Content = append(out.Content, anthThinkingOut{Type: "thinking", Thinking: p.Text, Signature: p.Signature})
		}
	}
	for _, p := range r.Parts {
		if p.Kind == PartText && p.Text != "" {
			out.Content = append(out.Content, anthTextOut{Type: "text", Text: p.Text})
		}
	}
	for _, c := range r.ToolCalls {
		out.Content = append(out.Content, anthToolUseOut{Type: "tool_use", ID: anthCallID(c.ID), Name: c.Name, Input: anthInput(c.Arguments)})
	}
	return json.Marshal(out)
}

func anthMessageID(id string) string {
	switch {
	case strings.HasPrefix(id, "msg_"):
		return id
	case id != "":
		return "msg_" + id
	}
	return "msg_" + rand.Text()
}

func anthCallID(id string) string {
	if id == "" {
		return "toolu_" + rand.Text()
	}
	return anthSafeID(id)
}

// NewDecoder implements [Upstream.NewDecoder].
func (anthropicCodec) NewDecoder() Decoder { return &anthDecoder{} }

// anthDecoder reads Anthropic's named SSE events:
//
//	event: message_start
//	data: {"type":"message_start","message":{"id":"msg_1","model":"claude-…","usage":{"input_tokens":25,"output_tokens":1}}}
//
//	event: content_block_delta
//	data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}
//
//	event: message_delta
//	data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}
type anthDecoder struct {
	usage anthUsageSum
	// tools maps content block indexes to tool call ordinals; server tool
	// blocks stream input_json_delta too and are not in it.
	tools  map[int]int
	nTools int
}

type anthEvent struct {
	Type         string          `json:"type"`
	Message      *anthResponse   `json:"message"`
	Index        int             `json:"index"`
	ContentBlock *anthBlock      `json:"content_block"`
	Delta        *anthEventDelta `json:"delta"`
	Usage        *anthUsage      `json:"usage"`
	Error        *anthError      `json:"error"`
}

type anthEventDelta struct {
	Type         string `json:"type"`
	Text         string `json:"text"`
	Thinking     string `json:"thinking"`
	Signature    string `json:"signature"`
	PartialJSON  string `json:"partial_json"`
	StopReason   string `json:"stop_reason"`
	StopSequence string `json:"stop_sequence"`
}

// Event implements [Decoder.Event].
func (d *anthDecoder) Event(ds []Delta, name string, data []byte) ([]Delta, bool, error) {
	switch name {
	case "message_stop":
		return ds, true, nil
	case "", "message_start", "content_block_start", "content_block_delta", "message_delta", "error":
	default:
		return ds, false, nil // ping, content_block_stop, events added later
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return ds, false, nil
	}
	if name == "content_block_delta" {
		if out, ok := anthTextDelta(ds, data); ok {
			return out, false, nil
		}
	}
	var e anthEvent
	if err := json.Unmarshal(data, &e); err != nil {
		if name == "error" {
			return ds, false, &Error{Status: http.StatusBadGateway, Msg: string(data)}
		}
		return ds, false, fmt.Errorf("anthropic stream: %s event: %w", cmp.Or(name, "unnamed"), err)
	}
	if name == "" {
		name = e.Type
	}
	switch name {
	case "message_start":
		if e.Message == nil {
			return ds, false, nil
		}
		if e.Message.Usage != nil {
			d.usage.merge(e.Message.Usage)
		}
		u := d.usage.hub()
		return append(ds, Delta{ID: e.Message.ID, Model: e.Message.Model, Usage: &u}), false, nil
	case "content_block_start":
		b := e.ContentBlock
		if b == nil {
			return ds, false, nil
		}
		switch b.Type {
		case "text":
			if b.Text != "" {
				ds = append(ds, Delta{Text: b.Text})
			}
		case "thinking":
			if b.Thinking != "" || b.Signature != "" {
				ds = append(ds, Delta{Thinking: b.Thinking, Signature: b.Signature})
			}
		case "tool_use":
			if d.tools == nil {
				d.tools = make(map[int]int)
			}
			d.tools[e.Index] = d.nTools
			t := &ToolDelta{Index: d.nTools, ID: b.ID, Name: b.Name}
			d.nTools++
			// The API starts input at {} and streams it in deltas;
			// compatible servers may send it whole here instead.
			if args := anthArguments(b.Input); args != "{}" {
				t.Arguments = args
			}
			ds = append(ds, Delta{Tool: t})
		}
		return ds, false, nil
	case "content_block_delta":
		x := e.Delta
		if x == nil {
			return ds, false, nil
		}
		switch x.Type {
		case "text_delta":
			if x.Text != "" {
				ds = append(ds, Delta{Text: x.Text})
			}
		case "thinking_delta":
			if x.Thinking != "" {
				ds = append(ds, Delta{Thinking: x.Thinking})
			}
		case "signature_delta":
			if x.Signature != "" {
				ds = append(ds, Delta{Signature: x.Signature})
			}
		case "input_json_delta":
			if i, ok := d.tools[e.Index]; ok && x.PartialJSON != "" {
				ds = append(ds, Delta{Tool: &ToolDelta{Index: i, Arguments: x.PartialJSON}})
			}
		}
		return ds, false, nil
	case "message_delta":
		var out Delta
		if x := e.Delta; x != nil {
			out.Finish = anthFinish(x.StopReason)
			if x.StopReason == "stop_sequence" {
				out.StopSequence = x.StopSequence
			}
		}
		if e.Usage != nil {
			d.usage.merge(e.Usage)
			u := d.usage.hub()
			out.Usage = &u
		}
		return append(ds, out), false, nil
	case "message_stop":
		return ds, true, nil
	case "error":
		var ae anthError
		if e.Error != nil {
			ae = *e.Error
		}
		return ds, false, anthAPIError(ae)
	}
	return ds, false, nil
}

// anthAPIError is an Anthropic error body as an *Error with the status
// its type stands for, so the relay can answer with it.
func anthAPIError(e anthError) *Error {
	msg := e.Message
	if msg == "" {
		msg = cmp.Or(e.Type, "unknown error")
	}
	return &Error{Status: anthStatusOf(e.Type), Msg: msg}
}

// Anthropic's error types and their statuses
// (https://docs.anthropic.com/en/api/errors).
var anthErrorTypes = map[string]int{
	"invalid_request_error": http.StatusBadRequest,
	"authentication_error":  http.StatusUnauthorized,
	"billing_error":         http.StatusPaymentRequired,
	"permission_error":      http.StatusForbidden,
	"not_found_error":       http.StatusNotFound,
	"request_too_large":     http.StatusRequestEntityTooLarge,
	"rate_limit_error":      http.StatusTooManyRequests,
	"api_error":             http.StatusInternalServerError,
	"timeout_error":         http.StatusGatewayTimeout,
	"overloaded_error":      529,
}

func anthStatusOf(errType string) int {
	if s, ok := anthErrorTypes[errType]; ok {
		return s
	}
	return http.StatusBadGateway
}

func anthErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	if status >= 400 && status < 500 {
		return "invalid_request_error"
	}
	return "api_error"
}

// EncodeError implements [Client.EncodeError]. Anthropic clients switch on
// error.type, so a gateway kind that is not one of Anthropic's types gives
// way to the type the status stands for.
func (anthropicCodec) EncodeError(status int, kind, msg string) []byte {
	t := kind
	if _, ok := anthErrorTypes[t]; !ok {
		t = anthErrorType(status)
	}
	b := make([]byte, 0, 64+len(msg))
	b = append(b, `{"type":"error","error":{"type":`...)
	b = appendJSONString(b, t)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, msg)
	return append(b, "}}"...)
}

// ErrorMessage implements [Upstream.ErrorMessage]. It also reads OpenAI's
// shape, which Anthropic-compatible gateways answer with.
func (anthropicCodec) ErrorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || anthIsNull(e.Error) {
		return ""
	}
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.Error, &m) != nil {
		var s string
		if json.Unmarshal(e.Error, &s) == nil {
			return s
		}
		return ""
	}
	return m.Message
}

// NewEncoder implements [Client.NewEncoder].
func (anthropicCodec) NewEncoder(req *Request) Encoder {
	e := &anthEncoder{}
	if req != nil {
		e.model = req.Model
	}
	return e
}

// Block kinds of anthEncoder.open.
const (
	anthNoBlock = iota
	anthTextBlock
	anthThinkingBlock
	anthToolBlock
)

// anthEncoder writes the event sequence Anthropic's SDKs accumulate:
// message_start, ping, then per block content_block_start, its deltas and
// content_block_stop, then message_delta and message_stop. Blocks cannot
// interleave, so a new kind (or a new tool call) closes the open block.
type anthEncoder struct {
	model   string
	started bool
	ended   bool
	open    int   // kind of the open block
	index   int64 // content index of the open block
	blocks  int64 // blocks opened so far
	signed  bool  // the open thinking block has its signature
	tool    int   // hub index of the open tool_use block
	calls   bool  // a tool_use block was written
	finish  Finish
	stopSeq string
	usage   Usage
}

// Delta implements [Encoder.Delta].
func (e *anthEncoder) Delta(dst []byte, d *Delta) []byte {
	if d == nil || e.ended {
		return dst
	}
	if !e.started {
		dst = e.start(dst, d)
	}
	if d.Thinking != "" {
		if e.open != anthThinkingBlock || e.signed {
			dst = e.openBlock(dst, anthThinkingBlock, nil)
		}
		dst = e.blockDelta(dst, "thinking_delta", "thinking", d.Thinking)
	}
	if d.Signature != "" {
		if e.open != anthThinkingBlock || e.signed {
			dst = e.openBlock(dst, anthThinkingBlock, nil)
		}
		dst = e.blockDelta(dst, "signature_delta", "signature", d.Signature)
		e.signed = true
	}
	if d.Text != "" {
		if e.open != anthTextBlock {
			dst = e.openBlock(dst, anthTextBlock, nil)
		}
		dst = e.blockDelta(dst, "text_delta", "text", d.Text)
	}
	if t := d.Tool; t != nil {
		if e.open != anthToolBlock || e.tool != t.Index {
			dst = e.openBlock(dst, anthToolBlock, t)
		}
		if t.Arguments != "" {
			dst = e.blockDelta(dst, "input_json_delta", "partial_json", t.Arguments)
		}
	}
	if d.Finish != "" {
		e.finish = d.Finish
	}
	if d.StopSequence != "" {
		e.stopSeq = d.StopSequence
	}
	if d.Usage != nil {
		e.usage = *d.Usage
	}
	return dst
}

// End implements [Encoder.End].
func (e *anthEncoder) End(dst []byte) []byte {
	if e.ended {
		return dst
	}
	if !e.started {
		dst = e.start(dst, nil)
	}
	e.ended = true
	dst = e.closeBlock(dst)
	stop := anthStopReason(e.finish, e.stopSeq, e.calls)
	dst = append(dst, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"...)
	dst = appendJSONString(dst, stop)
	dst = append(dst, `,"stop_sequence":`...)
	if stop == "stop_sequence" {
		dst = appendJSONString(dst, e.stopSeq)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `},"usage":`...)
	dst = anthAppendUsage(dst, e.usage)
	dst = append(dst, "}\n\n"...)
	return append(dst, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}

func (e *anthEncoder) start(dst []byte, d *Delta) []byte {
	e.started = true
	var id string
	var u Usage
	if d != nil {
		id = d.ID
		if d.Model != "" {
			e.model = d.Model
		}
		if d.Usage != nil {
			u = *d.Usage
		}
	}
	dst = append(dst, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"...)
	dst = appendJSONString(dst, anthMessageID(id))
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = appendJSONString(dst, e.model)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	dst = anthAppendUsage(dst, u)
	return append(dst, "}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"...)
}

func (e *anthEncoder) closeBlock(dst []byte) []byte {
	if e.open == anthNoBlock {
		return dst
	}
	e.open = anthNoBlock
	dst = append(dst, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
	dst = strconv.AppendInt(dst, e.index, 10)
	return append(dst, "}\n\n"...)
}

func (e *anthEncoder) openBlock(dst []byte, kind int, t *ToolDelta) []byte {
	dst = e.closeBlock(dst)
	e.index, e.blocks = e.blocks, e.blocks+1
	e.open, e.signed = kind, false
	dst = append(dst, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
	dst = strconv.AppendInt(dst, e.index, 10)
	switch kind {
	case anthTextBlock:
		dst = append(dst, `,"content_block":{"type":"text","text":""}}`...)
	case anthThinkingBlock:
		dst = append(dst, `,"content_block":{"type":"thinking","thinking":"","signature":""}}`...)
	case anthToolBlock:
		e.tool, e.calls = t.Index, true
		dst = append(dst, `,"content_block":{"type":"tool_use","id":`...)
		dst = appendJSONString(dst, anthCallID(t.ID))
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, t.Name)
		dst = append(dst, `,"input":{}}}`...)
	}
	return append(dst, "\n\n"...)
}

func (e *anthEncoder) blockDelta(dst []byte, typ, field, s string) []byte {
	dst = append(dst, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
	dst = strconv.AppendInt(dst, e.index, 10)
	dst = append(dst, `,"delta":{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","`...)
	dst = append(dst, field...)
	dst = append(dst, `":`...)
	dst = appendJSONString(dst, s)
	return append(dst, "}}\n\n"...)
}

func anthAppendUsage(dst []byte, u Usage) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, anthUncachedInput(u), 10)
	dst = append(dst, `,"output_tokens":`...)
	dst = strconv.AppendInt(dst, u.Output, 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheRead, 10)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = strconv.AppendInt(dst, u.CacheWrite, 10)
	return append(dst, '}')
}

package protocols

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// BedrockConverse is the codec of Amazon Bedrock's Converse and
// ConverseStream APIs (bedrock-runtime, API version 2023-09-30). The model
// and the streaming are in the URL (/model/{id}/converse or
// /converse-stream), never in the body; the stream is AWS event-stream
// frames whose :event-type names the event and whose payload is JSON.
//
// Choices where Converse has no exact counterpart:
//   - Tool choice "none": Converse has no such mode. Without tool calls or
//     results in the conversation the tools are left out; with them, the
//     tools stay (Bedrock requires toolConfig whenever toolUse or
//     toolResult blocks are present) with no choice, i.e. auto.
//   - Format json_schema goes to outputConfig.textFormat (Converse
//     structured output, the schema as a JSON string); json_object, which
//     has no Converse form, becomes a system instruction.
//   - Reasoning becomes additionalModelRequestFields.thinking, the
//     Anthropic form Bedrock forwards to Claude; top_k goes there too.
//     Claude refuses thinking with forced tool use or changed sampling:
//     forced tool use drops the thinking, thinking drops temperature,
//     top_k and a top_p under 0.95.
//   - Images by URL cannot be sent: Converse takes bytes or S3 locations.
//   - Thinking without a signature is not sent back: Claude rejects
//     unsigned thinking and other models do not need their earlier thoughts.
//   - A tool result's status is sent only for errors: only some models
//     (Claude, Nova) accept the field.
//   - ParallelToolCalls and User have no Converse field and are dropped.
var BedrockConverse Upstream = converseCodec{}

type converseCodec struct{}

func (converseCodec) Protocol() Protocol { return Converse }

// Converse request body, in the field order of the API reference.
type cvRequest struct {
	Messages        []cvMessage     `json:"messages"`
	System          []cvSystem      `json:"system,omitempty"`
	InferenceConfig *cvInference    `json:"inferenceConfig,omitempty"`
	ToolConfig      *cvToolConfig   `json:"toolConfig,omitempty"`
	OutputConfig    *cvOutputConfig `json:"outputConfig,omitempty"`
	// AdditionalModelRequestFields is passed to the model as it is.
	AdditionalModelRequestFields map[string]any `json:"additionalModelRequestFields,omitempty"`
}

type cvMessage struct {
	Role    string    `json:"role"`
	Content []cvBlock `json:"content"`
}

type cvSystem struct {
	Text string `json:"text"`
}

// cvBlock is a ContentBlock, a union: one field is set.
type cvBlock struct {
	Text             string        `json:"text,omitempty"`
	Image            *cvImage      `json:"image,omitempty"`
	ToolUse          *cvToolUse    `json:"toolUse,omitempty"`
	ToolResult       *cvToolResult `json:"toolResult,omitempty"`
	ReasoningContent *cvReasoning  `json:"reasoningContent,omitempty"`
}

type cvImage struct {
	Format string        `json:"format"`
	Source cvImageSource `json:"source"`
}

type cvImageSource struct {
	Bytes string `json:"bytes"` // base64, as the JSON protocol carries blobs
}

type cvToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type cvToolResult struct {
	ToolUseID string    `json:"toolUseId"`
	Content   []cvBlock `json:"content"`
	Status    string    `json:"status,omitempty"`
}

type cvReasoning struct {
	ReasoningText cvReasoningText `json:"reasoningText"`
}

type cvReasoningText struct {
	Text      string `json:"text"`
	Signature string `json:"signature,omitempty"`
}

type cvInference struct {
	MaxTokens     int      `json:"maxTokens,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"topP,omitempty"`
	StopSequences []string `json:"stopSequences,omitempty"`
}

type cvToolConfig struct {
	Tools      []cvTool       `json:"tools"`
	ToolChoice map[string]any `json:"toolChoice,omitempty"`
}

type cvTool struct {
	ToolSpec cvToolSpec `json:"toolSpec"`
}

type cvToolSpec struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	InputSchema cvInputSchema `json:"inputSchema"`
}

type cvInputSchema struct {
	JSON json.RawMessage `json:"json"`
}

type cvOutputConfig struct {
	TextFormat cvTextFormat `json:"textFormat"`
}

type cvTextFormat struct {
	Type      string            `json:"type"` // json_schema
	Structure cvFormatStructure `json:"structure"`
}

type cvFormatStructure struct {
	JSONSchema cvJSONSchema `json:"jsonSchema"`
}

type cvJSONSchema struct {
	Schema string `json:"schema"` // the schema as JSON text
	Name   string `json:"name,omitempty"`
}

// cvJSONInstruction asks for a JSON object where Converse has no
// json_object mode.
const cvJSONInstruction = "Respond with a single valid JSON object and nothing else."

// cvEmptySchema is the input schema of a tool that declares no parameters.
var cvEmptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// cvThinkingRoom is what a reasoning call without max tokens leaves for
// the answer beyond the thinking budget (Claude needs max_tokens > budget).
const cvThinkingRoom = 4096

// cvMinThinkingBudget is Claude's smallest thinking budget.
const cvMinThinkingBudget = 1024

// cvMaxUnstreamed is the largest max_tokens Claude on Bedrock answers
// without streaming while thinking.
const cvMaxUnstreamed = 21333

func (converseCodec) EncodeRequest(r *Request) ([]byte, error) {
	out := cvRequest{Messages: []cvMessage{}}
	var toolHistory bool
	var usedTools []string // tool names of earlier calls, in order
	for i, m := range r.Messages {
		var role string
		var content []cvBlock
		switch m.Role {
		case RoleSystem:
			for _, p := range m.Parts {
				if p.Kind == PartText && strings.TrimSpace(p.Text) != "" {
					out.System = append(out.System, cvSystem{Text: p.Text})
				}
			}
			continue
		case RoleUser:
			role = RoleUser
			for j, p := range m.Parts {
				b, ok, err := cvUserBlock(p)
				if err != nil {
					return nil, Errorf("messages[%d].content[%d]: %s", i, j, err.Msg)
				}
				if ok {
					content = append(content, b)
				}
			}
		case RoleAssistant:
			role = RoleAssistant
			for _, p := range m.Parts {
				switch {
				case p.Kind == PartText && strings.TrimSpace(p.Text) != "":
					content = append(content, cvBlock{Text: p.Text})
				case p.Kind == PartThinking && p.Signature != "" && p.Text != "":
					content = append(content, cvBlock{ReasoningContent: &cvReasoning{ReasoningText: cvReasoningText{Text: p.Text, Signature: p.Signature}}})
				}
			}
			for j, tc := range m.ToolCalls {
				input, err := cvToolInput(tc.Arguments)
				if err != nil {
					return nil, Errorf("messages[%d].tool_calls[%d] (%s): %s", i, j, tc.Name, err.Msg)
				}
				content = append(content, cvBlock{ToolUse: &cvToolUse{ToolUseID: cvToolUseID(tc.ID), Name: tc.Name, Input: input}})
				toolHistory = true
				usedTools = cvAppendNew(usedTools, tc.Name)
			}
		case RoleTool:
			role = RoleUser
			res := &cvToolResult{ToolUseID: cvToolUseID(m.ToolCallID), Content: []cvBlock{}}
			for j, p := range m.Parts {
				b, ok, err := cvUserBlock(p)
				if err != nil {
					return nil, Errorf("messages[%d].content[%d]: %s", i, j, err.Msg)
				}
				if ok {
					res.Content = append(res.Content, b)
				}
			}
			if m.ToolError {
				res.Status = "error"
			}
			content = []cvBlock{{ToolResult: res}}
			toolHistory = true
		default:
			return nil, Errorf("messages[%d]: unknown role %q", i, m.Role)
		}
		if len(content) == 0 {
			continue // Converse rejects empty messages and blank text
		}
		// Converse wants user and assistant turns to alternate: consecutive
		// tool results, or a tool result and the user's next words, make
		// one user message.
		if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == role {
			out.Messages[n-1].Content = append(out.Messages[n-1].Content, content...)
		} else {
			out.Messages = append(out.Messages, cvMessage{Role: role, Content: content})
		}
	}

	inf := cvInference{MaxTokens: r.MaxTokens, Temperature: r.Temperature, TopP: r.TopP, StopSequences: r.Stop}
	extra := map[string]any{}
	if budget := cvThinkingBudget(r, &inf.MaxTokens); budget > 0 {
		extra["thinking"] = map[string]any{"type": "enabled", "budget_tokens": budget}
		// Claude refuses sampling changes while thinking.
		if inf.Temperature != nil && *inf.Temperature != 1 {
			inf.Temperature = nil
		}
		if inf.TopP != nil && *inf.TopP < 0.95 {
			inf.TopP = nil
		}
	} else if r.TopK != nil {
		extra["top_k"] = *r.TopK
	}
	if inf.MaxTokens != 0 || inf.Temperature != nil || inf.TopP != nil || len(inf.StopSequences) > 0 {
		out.InferenceConfig = &inf
	}
	if len(extra) > 0 {
		out.AdditionalModelRequestFields = extra
	}

	tc, err := converseTools(r, toolHistory, usedTools)
	if err != nil {
		return nil, err
	}
	out.ToolConfig = tc

	if f := r.Format; f != nil {
		switch {
		case f.Kind == FormatJSONSchema && len(bytes.TrimSpace(f.Schema)) > 0:
			var schema bytes.Buffer
			if err := json.Compact(&schema, f.Schema); err != nil {
				return nil, Errorf("response_format.json_schema.schema is not valid JSON")
			}
			out.OutputConfig = &cvOutputConfig{TextFormat: cvTextFormat{Type: "json_schema",
				Structure: cvFormatStructure{JSONSchema: cvJSONSchema{Schema: schema.String(), Name: f.Name}}}}
		case f.Kind == FormatJSON || f.Kind == FormatJSONSchema:
			out.System = append(out.System, cvSystem{Text: cvJSONInstruction})
		}
	}
	return marshalNoHTML(out)
}

// cvThinkingBudget is the thinking budget of r, 0 for none, and sets
// *maxTokens so that it holds the budget: Claude wants 1024 <= budget <
// max_tokens, and a streamed answer when max_tokens exceeds 21333. Forced
// tool use, which Claude refuses while thinking, wins over thinking.
func cvThinkingBudget(r *Request, maxTokens *int) int {
	if r.Reasoning == nil {
		return 0
	}
	if tc := r.ToolChoice; tc != nil && (tc.Mode == ToolRequired || tc.Mode == ToolNamed) && len(r.Tools) > 0 {
		return 0
	}
	budget := r.Reasoning.Budget()
	if budget <= 0 {
		return 0
	}
	if *maxTokens == 0 {
		*maxTokens = budget + cvThinkingRoom
		if !r.Stream && *maxTokens > cvMaxUnstreamed {
			*maxTokens = cvMaxUnstreamed
		}
	}
	if budget >= *maxTokens {
		budget = *maxTokens * 3 / 4
	}
	if budget < cvMinThinkingBudget {
		if *maxTokens <= cvMinThinkingBudget {
			return 0 // too small a bound to think in
		}
		budget = cvMinThinkingBudget
	}
	return budget
}

// converseTools is the toolConfig: the tools and the choice among them.
func converseTools(r *Request, toolHistory bool, usedTools []string) (*cvToolConfig, error) {
	choice := ""
	if r.ToolChoice != nil {
		choice = r.ToolChoice.Mode
	}
	if choice == ToolNone && !toolHistory {
		return nil, nil
	}
	tc := &cvToolConfig{}
	for i, t := range r.Tools {
		schema := t.Parameters
		if len(bytes.TrimSpace(schema)) == 0 || bytes.Equal(bytes.TrimSpace(schema), []byte("null")) {
			schema = cvEmptySchema
		} else if !json.Valid(schema) {
			return nil, Errorf("tools[%d] (%s): parameters are not valid JSON", i, t.Name)
		}
		tc.Tools = append(tc.Tools, cvTool{ToolSpec: cvToolSpec{Name: t.Name, Description: t.Description, InputSchema: cvInputSchema{JSON: schema}}})
	}
	if len(tc.Tools) == 0 {
		if !toolHistory {
			return nil, nil
		}
		// Bedrock refuses toolUse and toolResult blocks without toolConfig;
		// a client that replays tool calls without declaring the tools gets
		// them declared with open parameters.
		for _, name := range usedTools {
			tc.Tools = append(tc.Tools, cvTool{ToolSpec: cvToolSpec{Name: name, InputSchema: cvInputSchema{JSON: cvEmptySchema}}})
		}
		if len(tc.Tools) == 0 {
			return nil, nil
		}
	}
	switch choice {
	case ToolAuto:
		tc.ToolChoice = map[string]any{"auto": struct{}{}}
	case ToolRequired:
		tc.ToolChoice = map[string]any{"any": struct{}{}}
	case ToolNamed:
		if r.ToolChoice.Name == "" {
			return nil, Errorf("tool_choice names no tool")
		}
		tc.ToolChoice = map[string]any{"tool": map[string]string{"name": r.ToolChoice.Name}}
	}
	return tc, nil
}

// cvUserBlock is a user or tool-result part as a content block; ok is false
// for a part Converse has no place for (blank text, thinking).
func cvUserBlock(p Part) (b cvBlock, ok bool, err *Error) {
	switch p.Kind {
	case PartText:
		if strings.TrimSpace(p.Text) == "" {
			return b, false, nil
		}
		return cvBlock{Text: p.Text}, true, nil
	case PartImage:
		img, err := converseImage(p)
		if err != nil {
			return b, false, err
		}
		return cvBlock{Image: img}, true, nil
	}
	return b, false, nil
}

// converseImage is an inline image; Converse cannot fetch URLs.
func converseImage(p Part) (*cvImage, *Error) {
	mediaType, data := p.MediaType, p.Data
	if data == "" && p.URL != "" {
		rest, ok := strings.CutPrefix(p.URL, "data:")
		meta, payload, comma := strings.Cut(rest, ",")
		if !ok || !comma || !strings.HasSuffix(meta, ";base64") {
			return nil, Errorf("Bedrock Converse cannot fetch images by URL (it takes image bytes or S3 locations only): send the image inline, base64-encoded")
		}
		mediaType, data = strings.TrimSuffix(meta, ";base64"), payload
	}
	if data == "" {
		return nil, Errorf("image has no data")
	}
	format := cvImageFormat(mediaType)
	if format == "" {
		format = cvSniffImage(data)
	}
	if format == "" {
		return nil, Errorf("image type %q is not supported by Bedrock Converse (png, jpeg, gif or webp)", mediaType)
	}
	return &cvImage{Format: format, Source: cvImageSource{Bytes: data}}, nil
}

func cvImageFormat(mediaType string) string {
	mt, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(mediaType)), ";")
	switch mt {
	case "image/png":
		return "png"
	case "image/jpeg", "image/jpg":
		return "jpeg"
	case "image/gif":
		return "gif"
	case "image/webp":
		return "webp"
	}
	return ""
}

// cvSniffImage tells the format of base64 image data by its magic bytes.
func cvSniffImage(data string) string {
	if len(data) > 24 {
		data = data[:24]
	}
	head, _ := base64.StdEncoding.DecodeString(data[:len(data)/4*4])
	switch ct := http.DetectContentType(head); ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return cvImageFormat(ct)
	}
	return ""
}

// cvToolInput is a tool call's arguments as the JSON object Converse wants.
func cvToolInput(args string) (json.RawMessage, *Error) {
	s := strings.TrimSpace(args)
	if s == "" || s == "null" {
		return json.RawMessage(`{}`), nil
	}
	if s[0] != '{' || !json.Valid([]byte(s)) {
		return nil, Errorf("arguments are not a JSON object")
	}
	return json.RawMessage(s), nil
}

// cvToolUseID fits an id to Converse's pattern [a-zA-Z0-9_-]+: other
// characters become '_'. The mapping is a function, so a call and its
// result still match.
func cvToolUseID(id string) string {
	ok := true
	for i := 0; i < len(id); i++ {
		if !cvIDByte(id[i]) {
			ok = false
			break
		}
	}
	if ok {
		return id
	}
	b := []byte(id)
	for i := range b {
		if !cvIDByte(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

func cvIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func cvAppendNew(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}

// Converse answer body.
type cvResponse struct {
	Output struct {
		Message *struct {
			Content []cvOutBlock `json:"content"`
		} `json:"message"`
	} `json:"output"`
	StopReason string   `json:"stopReason"`
	Usage      *cvUsage `json:"usage"`
}

type cvOutBlock struct {
	Text    *string `json:"text"`
	ToolUse *struct {
		ToolUseID string          `json:"toolUseId"`
		Name      string          `json:"name"`
		Input     json.RawMessage `json:"input"`
	} `json:"toolUse"`
	ReasoningContent *struct {
		ReasoningText *struct {
			Text      string `json:"text"`
			Signature string `json:"signature"`
		} `json:"reasoningText"`
	} `json:"reasoningContent"`
}

// cvUsage is TokenUsage. inputTokens counts only the tokens neither read
// from nor written to the prompt cache (AWS prompt-caching guide: total
// input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens), as
// Anthropic's input_tokens does.
type cvUsage struct {
	InputTokens           int64 `json:"inputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
	CacheReadInputTokens  int64 `json:"cacheReadInputTokens"`
	CacheWriteInputTokens int64 `json:"cacheWriteInputTokens"`
}

func (u *cvUsage) hub() Usage {
	return Usage{
		Input:      u.InputTokens + u.CacheReadInputTokens + u.CacheWriteInputTokens,
		Output:     u.OutputTokens,
		CacheRead:  u.CacheReadInputTokens,
		CacheWrite: u.CacheWriteInputTokens,
	}
}

// converseFinish maps a stopReason; unknown reasons read as a plain stop.
func converseFinish(reason string) Finish {
	switch reason {
	case "max_tokens", "model_context_window_exceeded":
		return FinishLength
	case "tool_use":
		return FinishToolCalls
	case "guardrail_intervened", "content_filtered":
		return FinishContentFilter
	}
	return FinishStop
}

func (converseCodec) DecodeResponse(body []byte) (*Response, error) {
	var cr cvResponse
	if err := json.Unmarshal(body, &cr); err != nil {
		return nil, fmt.Errorf("bedrock converse answer: %w", err)
	}
	if cr.Output.Message == nil {
		return nil, fmt.Errorf("bedrock converse answer has no output.message")
	}
	r := &Response{Finish: converseFinish(cr.StopReason)}
	for _, b := range cr.Output.Message.Content {
		switch {
		case b.Text != nil:
			r.Parts = append(r.Parts, Part{Kind: PartText, Text: *b.Text})
		case b.ToolUse != nil:
			args := "{}"
			if in := bytes.TrimSpace(b.ToolUse.Input); len(in) > 0 && !bytes.Equal(in, []byte("null")) {
				var c bytes.Buffer
				if err := json.Compact(&c, in); err == nil {
					args = c.String()
				}
			}
			r.ToolCalls = append(r.ToolCalls, ToolCall{ID: b.ToolUse.ToolUseID, Name: b.ToolUse.Name, Arguments: args})
		case b.ReasoningContent != nil && b.ReasoningContent.ReasoningText != nil:
			rt := b.ReasoningContent.ReasoningText
			r.Parts = append(r.Parts, Part{Kind: PartThinking, Text: rt.Text, Signature: rt.Signature})
		}
	}
	if cr.Usage != nil {
		r.Usage, r.UsageSeen = cr.Usage.hub(), true
	}
	return r, nil
}

// ErrorMessage reads Bedrock's error bodies, {"message": "..."}; some
// services and gateways capitalize it.
func (converseCodec) ErrorMessage(body []byte) string {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return ""
	}
	for _, k := range []string{"message", "Message"} {
		if v := root.Get(k); v.Type == gjson.String {
			return v.Str
		}
	}
	return ""
}

func (converseCodec) NewDecoder() Decoder { return &converseDecoder{tools: map[int]int{}} }

// converseDecoder reads ConverseStream events. Tool calls are numbered in
// the order their blocks start, whatever their contentBlockIndex.
type converseDecoder struct {
	tools map[int]int // contentBlockIndex → tool call index
}

// Stream event payloads. Bedrock pads events with a "p" field, ignored.
type cvBlockStart struct {
	ContentBlockIndex int `json:"contentBlockIndex"`
	Start             struct {
		ToolUse *struct {
			ToolUseID string `json:"toolUseId"`
			Name      string `json:"name"`
		} `json:"toolUse"`
	} `json:"start"`
}

type cvBlockDelta struct {
	ContentBlockIndex int `json:"contentBlockIndex"`
	Delta             struct {
		Text    *string `json:"text"`
		ToolUse *struct {
			Input string `json:"input"`
		} `json:"toolUse"`
		ReasoningContent *struct {
			Text      string `json:"text"`
			Signature string `json:"signature"`
		} `json:"reasoningContent"`
	} `json:"delta"`
}

func (d *converseDecoder) Event(ds []Delta, name string, data []byte) ([]Delta, bool, error) {
	switch name {
	case "contentBlockStart":
		var ev cvBlockStart
		if err := json.Unmarshal(data, &ev); err != nil {
			return ds, false, fmt.Errorf("bedrock contentBlockStart: %w", err)
		}
		if tu := ev.Start.ToolUse; tu != nil {
			ds = append(ds, Delta{Tool: &ToolDelta{Index: d.toolIndex(ev.ContentBlockIndex), ID: tu.ToolUseID, Name: tu.Name}})
		}
	case "contentBlockDelta":
		var ev cvBlockDelta
		if err := json.Unmarshal(data, &ev); err != nil {
			return ds, false, fmt.Errorf("bedrock contentBlockDelta: %w", err)
		}
		switch dl := ev.Delta; {
		case dl.Text != nil:
			if *dl.Text != "" {
				ds = append(ds, Delta{Text: *dl.Text})
			}
		case dl.ToolUse != nil:
			if dl.ToolUse.Input != "" {
				ds = append(ds, Delta{Tool: &ToolDelta{Index: d.toolIndex(ev.ContentBlockIndex), Arguments: dl.ToolUse.Input}})
			}
		case dl.ReasoningContent != nil:
			if rc := dl.ReasoningContent; rc.Text != "" || rc.Signature != "" {
				ds = append(ds, Delta{Thinking: rc.Text, Signature: rc.Signature})
			}
		}
	case "messageStop":
		var ev struct {
			StopReason string `json:"stopReason"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return ds, false, fmt.Errorf("bedrock messageStop: %w", err)
		}
		ds = append(ds, Delta{Finish: converseFinish(ev.StopReason)})
	case "metadata":
		var ev struct {
			Usage *cvUsage `json:"usage"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return ds, false, fmt.Errorf("bedrock metadata: %w", err)
		}
		if ev.Usage != nil {
			u := ev.Usage.hub()
			ds = append(ds, Delta{Usage: &u})
		}
		return ds, true, nil
	default:
		// messageStart and contentBlockStop carry nothing the hub keeps;
		// unknown events are skipped.
		if typ, ok := strings.CutPrefix(name, "exception:"); ok {
			return ds, false, converseException(typ, data)
		}
	}
	return ds, false, nil
}

// toolIndex numbers a tool block on first sight.
func (d *converseDecoder) toolIndex(block int) int {
	i, ok := d.tools[block]
	if !ok {
		i = len(d.tools)
		d.tools[block] = i
	}
	return i
}

// converseException is a stream's exception event as an error with the
// HTTP status Bedrock gives that exception.
func converseException(typ string, payload []byte) error {
	msg := BedrockConverse.ErrorMessage(payload)
	if msg == "" {
		msg = "the stream ended with an exception"
	}
	status := http.StatusBadGateway
	switch strings.ToLower(typ) {
	case "throttlingexception":
		status = http.StatusTooManyRequests
	case "validationexception":
		status = http.StatusBadRequest
	case "accessdeniedexception":
		status = http.StatusForbidden
	case "resourcenotfoundexception":
		status = http.StatusNotFound
	case "modeltimeoutexception":
		status = http.StatusRequestTimeout
	case "modelstreamerrorexception", "modelerrorexception":
		status = http.StatusFailedDependency
	case "internalserverexception":
		status = http.StatusInternalServerError
	case "serviceunavailableexception":
		status = http.StatusServiceUnavailable
	}
	return &Error{Status: status, Msg: "bedrock " + typ + ": " + msg}
}

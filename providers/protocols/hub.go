// Package protocols translates chat calls between the wire protocols LLM
// clients and providers speak: OpenAI chat completions, OpenAI Responses,
// Anthropic Messages, Bedrock Converse and Gemini generateContent.
//
// Every translation goes through one hub form (Request, Response, Delta),
// shaped after OpenAI chat: a client codec decodes the client's request into
// it and encodes the answer out of it; an upstream codec encodes the
// provider's request out of it and decodes the provider's answer into it.
// n protocols then need 2n codecs, not n² translators. A call whose client
// and provider speak the same protocol is never translated: the relay passes
// its bytes through.
package protocols

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Protocol names a wire protocol, as the call log and X-LLM-*-Protocol
// headers give it.
type Protocol string

// The constants name protocols; the codecs that speak them are the
// package's values OpenAIChat, OpenAIResponses, Anthropic, BedrockConverse
// and Gemini.
const (
	ChatCompletions Protocol = "openai-chat"
	Embeddings      Protocol = "openai-embeddings"
	Responses       Protocol = "openai-responses"
	Messages        Protocol = "anthropic-messages"
	Converse        Protocol = "bedrock-converse"
	GenerateContent Protocol = "gemini-generate-content"
)

// Request is a chat call in hub form.
type Request struct {
	Model string
	// Messages in order. System messages may appear anywhere (OpenAI allows
	// that); encoders for protocols with one top-level system prompt join
	// their text in order.
	Messages []Message
	// MaxTokens bounds the answer, reasoning included; 0 = not set (the
	// encoder of a protocol that requires it picks a default).
	MaxTokens   int
	Temperature *float64
	TopP        *float64
	TopK        *int
	Stop        []string
	Stream      bool
	// StreamUsage is an OpenAI chat client's stream_options.include_usage:
	// it wants the final usage chunk. Other protocols always stream usage.
	StreamUsage bool
	Tools       []Tool
	ToolChoice  *ToolChoice
	// ParallelToolCalls false asks for at most one tool call per turn.
	ParallelToolCalls *bool
	Format            *Format
	Reasoning         *Reasoning
	// User identifies the end user to the provider (OpenAI user, Anthropic
	// metadata.user_id).
	User string
}

// Roles of a Message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn.
type Message struct {
	Role  string
	Parts []Part
	// ToolCalls are an assistant turn's calls, after its Parts.
	ToolCalls []ToolCall
	// ToolCallID is the call a RoleTool message answers; its Parts are the
	// result.
	ToolCallID string
	// ToolError marks a tool result that reports a failure (Anthropic
	// is_error, Bedrock status "error").
	ToolError bool
}

// Part kinds.
const (
	PartText     = "text"
	PartImage    = "image"
	PartThinking = "thinking"
)

// Part is one piece of a message's content.
type Part struct {
	Kind string
	Text string // text, thinking
	// Image: URL for an image by address, or MediaType + Data (base64, no
	// "data:" prefix) for an inline one.
	URL       string
	MediaType string
	Data      string
	// Signature is a thinking block's signature (Anthropic, Bedrock): it
	// must go back unchanged in the next turn.
	Signature string
}

// ToolCall is one function call the model asked for.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // a JSON object, as text
}

// Tool is one function the model may call.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage // JSON Schema; nil = no parameters
}

// Tool choice modes.
const (
	ToolAuto     = "auto"
	ToolNone     = "none"
	ToolRequired = "required" // any tool
	ToolNamed    = "tool"     // the tool in Name
)

// ToolChoice constrains tool use.
type ToolChoice struct {
	Mode string
	Name string
}

// Format kinds.
const (
	FormatJSON       = "json_object"
	FormatJSONSchema = "json_schema"
)

// Format asks for a JSON answer, with a schema when Kind is FormatJSONSchema.
type Format struct {
	Kind   string
	Name   string
	Schema json.RawMessage
	Strict bool
}

// Reasoning asks for thinking: OpenAI-style effort ("minimal", "low",
// "medium", "high") or a token budget (Anthropic, Bedrock, Gemini). An
// encoder that needs the other form converts (see BudgetFor, EffortFor).
type Reasoning struct {
	Effort       string
	BudgetTokens int
}

// Finish reasons, in OpenAI chat's terms.
type Finish string

const (
	FinishStop          Finish = "stop"
	FinishLength        Finish = "length"
	FinishToolCalls     Finish = "tool_calls"
	FinishContentFilter Finish = "content_filter"
)

// Usage is one call's token accounting, in OpenAI's terms: Input counts
// every prompt token, cached ones included; Output counts every answer
// token, reasoning included. Encoders for protocols that count otherwise
// (Anthropic's input_tokens excludes cache reads and writes) subtract.
type Usage struct {
	Input      int64
	Output     int64
	CacheRead  int64 // of Input, served from the provider's prompt cache
	CacheWrite int64 // of Input, written to the cache (Anthropic, Bedrock)
	Reasoning  int64 // of Output
}

// Total is every token the call used.
func (u Usage) Total() int64 { return u.Input + u.Output }

// Response is a whole answer in hub form.
type Response struct {
	ID      string
	Model   string
	Created int64 // unix seconds; 0 = now
	// Parts are the answer's text and thinking, in order.
	Parts     []Part
	ToolCalls []ToolCall
	Finish    Finish
	// StopSequence is the stop sequence that ended the answer, when the
	// provider says which (Anthropic).
	StopSequence string
	Usage        Usage
	UsageSeen    bool
}

// Delta is one step of a streamed answer. A decoder emits the fields it
// learned from one upstream event; zero fields carry nothing.
type Delta struct {
	// ID and Model come with the first delta that knows them.
	ID, Model string
	Text      string
	Thinking  string
	// Signature ends a thinking block (Anthropic, Bedrock).
	Signature string
	Tool      *ToolDelta
	Finish    Finish
	// StopSequence is the stop sequence that ended the answer, if known.
	StopSequence string
	// Usage, when set, is the whole call's usage so far: a later one
	// replaces it, it is never added to (decoders merge split reports).
	Usage *Usage
}

// ToolDelta is part of a streamed tool call. Index numbers the answer's
// tool calls from 0; ID and Name come with the first part of each.
type ToolDelta struct {
	Index     int
	ID, Name  string
	Arguments string // the next fragment of the arguments' JSON text
}

// Error is a request a codec cannot translate; the relay answers it with
// Status (400 unless set) in the client protocol's error shape.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Errorf makes a 400 *Error.
func Errorf(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// Client is a protocol clients speak to the gateway.
type Client interface {
	Protocol() Protocol
	// DecodeRequest reads a client's request body. Errors are *Error.
	DecodeRequest(body []byte) (*Request, error)
	EncodeResponse(r *Response) ([]byte, error)
	// NewEncoder turns a streamed answer to req into this protocol's
	// stream, one encoder per call.
	NewEncoder(req *Request) Encoder
	// EncodeError is this protocol's error body for an HTTP status; kind
	// is the gateway's error code ("" = derive it from status).
	EncodeError(status int, kind, msg string) []byte
	// StreamContentType is the Content-Type of this protocol's streams.
	StreamContentType() string
}

// Encoder writes a streamed answer in a client protocol.
type Encoder interface {
	// Delta appends the bytes d becomes (maybe none) to dst.
	Delta(dst []byte, d *Delta) []byte
	// End appends the stream's closing bytes to dst, once, after the last
	// delta: the final usage, the end marker.
	End(dst []byte) []byte
}

// Upstream is a protocol providers speak.
type Upstream interface {
	Protocol() Protocol
	// EncodeRequest writes r as this protocol's request body. Errors are
	// *Error.
	EncodeRequest(r *Request) ([]byte, error)
	DecodeResponse(body []byte) (*Response, error)
	NewDecoder() Decoder
	// ErrorMessage is the message of this protocol's error body, "" when
	// body is not one.
	ErrorMessage(body []byte) string
}

// Decoder reads a streamed answer, one upstream event at a time.
type Decoder interface {
	// Event decodes one event: name is the SSE event name or the AWS
	// event-stream :event-type ("" when the stream names none), data its
	// payload. It appends what the event carried to ds. done is true for
	// the protocol's end of stream ([DONE], message_stop,
	// response.completed): the relay ends the stream there.
	Event(ds []Delta, name string, data []byte) (out []Delta, done bool, err error)
}

// BudgetFor is the thinking budget an effort stands for, for protocols that
// take a budget; 0 for an unknown effort.
func BudgetFor(effort string) int {
	switch effort {
	case "minimal":
		return 1024 // Anthropic's smallest budget
	case "low":
		return 2048
	case "medium":
		return 8192
	case "high":
		return 24576
	}
	return 0
}

// EffortFor is the effort closest to a thinking budget, for protocols that
// take an effort.
func EffortFor(budget int) string {
	switch {
	case budget <= 1024:
		return "minimal"
	case budget <= 2048:
		return "low"
	case budget <= 8192:
		return "medium"
	}
	return "high"
}

// Reasoning returns r's budget, converting an effort.
func (r *Reasoning) Budget() int {
	if r.BudgetTokens > 0 {
		return r.BudgetTokens
	}
	return BudgetFor(r.Effort)
}

// EffortOrFromBudget returns r's effort, converting a budget.
func (r *Reasoning) EffortOrFromBudget() string {
	if r.Effort != "" {
		return r.Effort
	}
	return EffortFor(r.BudgetTokens)
}

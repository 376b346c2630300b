package fakeprovider

import (
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/tidwall/gjson"
)

// azureStreamOptionsSince is the first Azure api-version that accepts
// stream_options (providers.md §3).
const azureStreamOptionsSince = "2024-10-21"

// azureFilterOK is Azure's content-filter verdict for harmless text.
const azureFilterOK = `{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`

const azurePromptFilter = `[{"prompt_index":0,"content_filter_results":` + azureFilterOK + `}]`

type chatRequest struct {
	model        string
	stream       bool
	includeUsage bool
}

// parseChat checks what every provider rejects: a body that is not a JSON
// object, no messages, and (unless the path names an Azure deployment) no
// model.
func parseChat(body []byte, needModel bool) (chatRequest, *invalid) {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return chatRequest{}, &invalid{msg: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"}
	}
	msgs := gjson.GetBytes(body, "messages")
	switch {
	case !msgs.Exists():
		return chatRequest{}, &invalid{msg: "Missing required parameter: 'messages'.", param: "messages", code: "missing_required_parameter"}
	case !msgs.IsArray():
		return chatRequest{}, &invalid{msg: "Invalid type for 'messages': expected an array.", param: "messages", code: "invalid_type"}
	case len(msgs.Array()) == 0:
		return chatRequest{}, &invalid{msg: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", param: "messages", code: "empty_array"}
	}
	req := chatRequest{
		model:        gjson.GetBytes(body, "model").String(),
		stream:       gjson.GetBytes(body, "stream").Bool(),
		includeUsage: gjson.GetBytes(body, "stream_options.include_usage").Bool(),
	}
	if needModel && req.model == "" {
		return chatRequest{}, &invalid{msg: "you must provide a model parameter"}
	}
	return req, nil
}

// chat answers POST .../chat/completions. deployment is the Azure classic
// deployment from the path, or "".
func (s *Server) chat(w http.ResponseWriter, r *http.Request, body []byte, deployment string) bool {
	req, bad := parseChat(body, deployment == "")
	if bad != nil {
		return s.fail(w, s.flavor.invalid(*bad))
	}
	if deployment != "" && gjson.GetBytes(body, "stream_options").Exists() &&
		apiVersionBefore(r.URL.Query().Get("api-version"), azureStreamOptionsSince) {
		return s.fail(w, apiError{http.StatusBadRequest, OpenAIError("invalid_request_error", "unknown_parameter", "stream_options", "Unknown parameter: 'stream_options'.")})
	}
	if s.flavor.vertex && !strings.HasPrefix(req.model, "google/") {
		return s.fail(w, s.flavor.invalid(invalid{msg: fmt.Sprintf("Model name must be <publisher>/<model>, for example google/gemini-2.5-flash; got %q.", req.model)}))
	}

	c := completion{
		id:      fmt.Sprintf("chatcmpl-fake-%d", s.seq.Add(1)),
		created: time.Now().Unix(),
		model:   s.responseModel(req.model, deployment, AzureChatModel),
		words:   splitWords(s.opts.Reply),
	}
	usage := s.flavor.usage(PromptTokens(body), len(c.words))
	if !req.stream {
		writeJSON(w, http.StatusOK, c.body(s.flavor, s.opts.Reply, usage))
		return false
	}
	if !req.includeUsage {
		usage = "" // without the option OpenAI sends no usage at all
	}
	return s.writeReply(w, r, Reply{Events: c.events(s.flavor, usage)})
}

// completion is one answer, rendered whole or as a stream.
type completion struct {
	id      string
	created int64
	model   string
	words   []string // the reply cut at word starts; they join back to it
}

func (c completion) body(f *flavor, reply, usage string) string {
	b := `{"id":"","object":"chat.completion","created":0,"model":"","choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":null,"service_tier":"default","system_fingerprint":"fp_fake"}`
	b = set(b, "id", c.id)
	b = set(b, "created", c.created)
	b = set(b, "model", c.model)
	b = set(b, "choices.0.message.content", reply)
	b = setRaw(b, "usage", usage)
	if f.azure {
		b = setRaw(b, "choices.0.content_filter_results", azureFilterOK)
		b = setRaw(b, "prompt_filter_results", azurePromptFilter)
	}
	return b
}

// events is the SSE stream: (Azure's empty filter chunk,) the role chunk,
// one chunk per word, the finish chunk, the usage when asked for (own
// choices:[] chunk, or on the finish chunk for DeepSeek and Gemini), [DONE].
// usage "" means the client did not ask for it.
func (c completion) events(f *flavor, usage string) []string {
	var out []string
	if f.azure {
		out = append(out, setRaw(`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":null}`, "prompt_filter_results", azurePromptFilter))
	}
	out = append(out, c.chunk(`{"role":"assistant","content":""}`, "", ""))
	for _, word := range c.words {
		out = append(out, c.chunk(set(`{"content":""}`, "content", word), "", ""))
	}
	switch {
	case usage == "":
		out = append(out, c.chunk(`{}`, "stop", ""))
	case f.usageOnFinish:
		out = append(out, c.chunk(`{}`, "stop", usage))
	default:
		out = append(out, c.chunk(`{}`, "stop", ""))
		out = append(out, setRaw(c.chunk(`{}`, "", usage), "choices", `[]`))
	}
	return append(out, "[DONE]")
}

// chunk is a chat.completion.chunk; empty finish and usage render as null.
func (c completion) chunk(delta, finish, usage string) string {
	b := `{"id":"","object":"chat.completion.chunk","created":0,"model":"","system_fingerprint":"fp_fake","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":null}],"usage":null}`
	b = set(b, "id", c.id)
	b = set(b, "created", c.created)
	b = set(b, "model", c.model)
	b = setRaw(b, "choices.0.delta", delta)
	if finish != "" {
		b = set(b, "choices.0.finish_reason", finish)
	}
	if usage != "" {
		b = setRaw(b, "usage", usage)
	}
	return b
}

// splitWords cuts s at the end of each word but the last, so the pieces
// read like model tokens (" equals"), concatenate back to s exactly, and
// number Words(s).
func splitWords(s string) []string {
	var ends []int
	inWord := false
	for i, r := range s {
		space := unicode.IsSpace(r)
		if inWord && space {
			ends = append(ends, i)
		}
		inWord = !space
	}
	if inWord {
		ends = append(ends, len(s))
	}
	out := make([]string, len(ends))
	start := 0
	for k, end := range ends {
		if k == len(ends)-1 {
			end = len(s) // trailing whitespace stays with the last word
		}
		out[k] = s[start:end]
		start = end
	}
	return out
}

// apiVersionBefore reports whether a dated Azure api-version
// ("2024-02-15-preview") is older than date. Undated versions ("preview",
// "latest") are treated as new.
func apiVersionBefore(version, date string) bool {
	if len(version) < len(date) {
		return false
	}
	d := version[:len(date)]
	if _, err := time.Parse(time.DateOnly, d); err != nil {
		return false
	}
	return d < date
}

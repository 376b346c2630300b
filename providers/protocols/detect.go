package protocols

import (
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// Detect tells the protocol of a client's call by its path first, as the
// SDKs call fixed paths (APISIX routes may rewrite the prefix, never the
// end), then by its body and headers for routes on a path of their own.
func Detect(path string, h http.Header, body []byte) Protocol {
	switch p := strings.TrimRight(path, "/"); {
	case strings.HasSuffix(p, "/chat/completions"):
		return ChatCompletions
	case strings.HasSuffix(p, "/embeddings"):
		return Embeddings
	case strings.HasSuffix(p, "/v1/messages") || strings.HasSuffix(p, "/anthropic/messages"):
		return Messages
	case strings.HasSuffix(p, "/responses"):
		return Responses
	case strings.HasSuffix(p, "/converse") || strings.HasSuffix(p, "/converse-stream"):
		return Converse
	}
	root := gjson.ParseBytes(body)
	switch {
	case root.Get("messages").Exists():
		// Anthropic's SDKs always send anthropic-version; a top-level
		// system or a content block only Anthropic has says it too.
		if h.Get("Anthropic-Version") != "" {
			return Messages
		}
		return ChatCompletions
	case root.Get("input").Exists():
		// Embeddings bodies carry input, model, dimensions, encoding_format
		// and user; any field only Responses has tells it apart.
		for _, k := range responsesOnly {
			if root.Get(k).Exists() {
				return Responses
			}
		}
		return Embeddings
	}
	return ChatCompletions
}

var responsesOnly = []string{"instructions", "max_output_tokens", "tools", "stream", "reasoning", "text", "previous_response_id", "store", "conversation", "background", "tool_choice", "include", "truncation"}

package fakeprovider

import (
	"strings"

	"github.com/tidwall/gjson"
)

// Defaults of the fake's answers, exported so tests can compute the usage
// they expect.
const (
	// DefaultReply is the seed's OpenAI answer.
	DefaultReply = "1+1 equals 2."
	// GeminiThinkingTokens are added to Gemini's total_tokens only, so that
	// total > prompt + completion as in the seed (15 + 8 + 18 = 41).
	GeminiThinkingTokens = 18
	// AzureChatModel and AzureEmbeddingModel are what Azure's classic
	// deployment paths answer with when ModelAlias has no entry for the
	// deployment: the underlying model, never the deployment name.
	AzureChatModel      = "gpt-4o-2024-08-06"
	AzureEmbeddingModel = "text-embedding-3-small"
	// DefaultDims is the length of embedding vectors when the request sets
	// no dimensions.
	DefaultDims = 8
)

// Words is the fake tokenizer (providers.md §8): one token per
// whitespace-separated word, so "hello world" is 2 tokens as in the seed.
func Words(s string) int {
	return len(strings.Fields(s))
}

// PromptTokens counts a chat request's prompt: the words of every message
// content string and of every text part of array contents. Other parts
// (images) and null contents (assistant tool calls) count nothing.
func PromptTokens(body []byte) int {
	n := 0
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		c := m.Get("content")
		switch {
		case c.Type == gjson.String:
			n += Words(c.String())
		case c.IsArray():
			c.ForEach(func(_, part gjson.Result) bool {
				if part.Get("type").String() == "text" {
					n += Words(part.Get("text").String())
				}
				return true
			})
		}
		return true
	})
	return n
}

// usage is a chat usage object for the flavour.
func (f *flavor) usage(prompt, completion int) string {
	u := `{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`
	u = set(u, "prompt_tokens", prompt)
	u = set(u, "completion_tokens", completion)
	u = set(u, "total_tokens", prompt+completion+f.thinkingTokens)
	if f.usageExtras != nil {
		u = f.usageExtras(u, prompt)
	}
	return u
}

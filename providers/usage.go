package providers

import (
	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// Usage is the token accounting a provider reported for one call.
type Usage struct {
	Prompt, Completion, Total int64
	Cached, Reasoning         int64
}

// Observation collects what the relay learns from an OpenAI-shaped answer.
type Observation struct {
	// Model is the first non-empty model the provider named (Azure's first
	// stream chunk has "model": "").
	Model string
	// Usage is the last usage object seen: Gemini repeats usage in several
	// chunks, so values are replaced, never added.
	Usage     Usage
	UsageSeen bool
}

// Observe reads model and usage from one JSON answer or stream chunk.
func (o *Observation) Observe(payload []byte) {
	if o.Model == "" {
		o.Model = gjson.GetBytes(payload, "model").String()
	}
	u := gjson.GetBytes(payload, "usage")
	if !u.IsObject() {
		return
	}
	o.UsageSeen = true
	o.Usage = Usage{
		Prompt:     u.Get("prompt_tokens").Int(),
		Completion: u.Get("completion_tokens").Int(),
		Total:      u.Get("total_tokens").Int(),
		Cached:     u.Get("prompt_tokens_details.cached_tokens").Int(),
		Reasoning:  u.Get("completion_tokens_details.reasoning_tokens").Int(),
	}
	if o.Usage.Cached == 0 {
		// DeepSeek reports cache hits in its own field.
		o.Usage.Cached = u.Get("prompt_cache_hit_tokens").Int()
	}
}

// IsUsageOnly reports a stream chunk that carries only usage (OpenAI's final
// `"choices": []` chunk), the one the relay withholds from clients that did
// not ask for usage.
func IsUsageOnly(payload []byte) bool {
	// Usage first: most chunks have none, and looking it up allocates
	// nothing when it is absent, while "choices" is always there.
	if !gjson.GetBytes(payload, "usage").IsObject() {
		return false
	}
	c := gjson.Get(view(payload), "choices")
	return c.IsArray() && len(c.Array()) == 0
}

// ObserveHub records what a protocol codec read from an answer: the model
// (first one wins) and the usage so far (nil = none in this step).
func (o *Observation) ObserveHub(model string, u *protocols.Usage) {
	if o.Model == "" {
		o.Model = model
	}
	if u == nil {
		return
	}
	o.UsageSeen = true
	o.Usage = Usage{
		Prompt: u.Input, Completion: u.Output, Total: u.Total(),
		Cached: u.CacheRead, Reasoning: u.Reasoning,
	}
}

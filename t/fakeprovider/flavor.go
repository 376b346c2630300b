package fakeprovider

import "github.com/tidwall/sjson"

// flavor is everything that differs between providers. Handlers are shared
// and consult this table instead of branching on provider names.
type flavor struct {
	errorShapes
	// usageOnFinish: with include_usage, usage rides on the finish_reason
	// chunk instead of a separate choices:[] chunk (DeepSeek, Gemini).
	usageOnFinish bool
	// thinkingTokens are counted in total_tokens only (Gemini: the seed's
	// 15/8/41 shape).
	thinkingTokens int
	// noEmbeddingUsage: the embeddings answer has no usage key (Gemini).
	noEmbeddingUsage bool
	// usageExtras adds the flavour's extra usage fields to a usage object.
	usageExtras func(usage string, prompt int) string
	// azure: deployments paths with api-version, prompt_filter_results, an
	// empty first stream chunk, and stream_options refused by old versions.
	azure bool
	// vertex: project/location paths, google/ models, :predict embeddings.
	vertex bool
}

var flavors = map[string]*flavor{
	"":         openAIFlavor,
	"openai":   openAIFlavor,
	"deepseek": {errorShapes: deepSeekErrors, usageOnFinish: true, usageExtras: deepSeekUsage},
	"azure":    {errorShapes: azureErrors, usageExtras: openAIUsage, azure: true},
	"gemini":   {errorShapes: geminiErrors, usageOnFinish: true, thinkingTokens: GeminiThinkingTokens, noEmbeddingUsage: true},
	"vertex":   {errorShapes: vertexErrors, usageExtras: vertexUsage, vertex: true},
}

var openAIFlavor = &flavor{errorShapes: openAIErrors, usageExtras: openAIUsage}

// OpenAI details every usage breakdown field, all zero for the fake.
func openAIUsage(u string, _ int) string {
	u = setRaw(u, "prompt_tokens_details", `{"cached_tokens":0,"audio_tokens":0}`)
	return setRaw(u, "completion_tokens_details", `{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}`)
}

// DeepSeek reports its context cache: hit + miss = prompt; nothing is cached.
func deepSeekUsage(u string, prompt int) string {
	u = setRaw(u, "prompt_tokens_details", `{"cached_tokens":0}`)
	u = set(u, "prompt_cache_hit_tokens", 0)
	return set(u, "prompt_cache_miss_tokens", prompt)
}

func vertexUsage(u string, _ int) string {
	return setRaw(u, "extra_properties", `{"google":{"traffic_type":"ON_DEMAND"}}`)
}

// set and setRaw build answers from constant templates; their paths are
// constants too, so an error is a bug in this package.
func set(json, path string, value any) string {
	out, err := sjson.Set(json, path, value)
	if err != nil {
		panic("fakeprovider: " + err.Error())
	}
	return out
}

func setRaw(json, path, raw string) string {
	out, err := sjson.SetRaw(json, path, raw)
	if err != nil {
		panic("fakeprovider: " + err.Error())
	}
	return out
}

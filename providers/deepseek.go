package providers

// DeepSeek speaks the OpenAI format at its own host and documents no
// embeddings endpoint, so only chat has a default.
var deepSeekDefaults = map[API]string{
	Chat: "https://api.deepseek.com/chat/completions",
}

func newDeepSeek(c Config) (Provider, error) {
	return buildOpenAI("deepseek", c, deepSeekDefaults)
}

package providers

// OpenRouter speaks the OpenAI format below /api/v1.
var openRouterDefaults = map[API]string{
	Chat:       "https://openrouter.ai/api/v1/chat/completions",
	Embeddings: "https://openrouter.ai/api/v1/embeddings",
}

func newOpenRouter(c Config) (Provider, error) {
	return buildOpenAI("openrouter", c, openRouterDefaults)
}

package providers

// openAICompatiblePaths are the conventional paths of self-hosted OpenAI-style
// servers (vLLM, Ollama, LocalAI...), used when override.endpoint gives only
// scheme and host.
var openAICompatiblePaths = map[API]string{
	Chat:       "/v1/chat/completions",
	Embeddings: "/v1/embeddings",
}

// newCompatible serves any OpenAI-style API; it has no host of its own, so
// override.endpoint is required.
func newCompatible(c Config) (Provider, error) {
	if c.Endpoint == "" {
		return nil, &ConfError{Field: "override.endpoint", Msg: "is required for provider openai-compatible"}
	}
	return buildOpenAI("openai-compatible", c, openAICompatiblePaths)
}

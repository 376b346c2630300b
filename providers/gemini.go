package providers

// Gemini's OpenAI-compatible surface; the API key goes in auth.header as
// "Authorization: Bearer <key>".
var geminiDefaults = map[API]string{
	Chat:       "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
	Embeddings: "https://generativelanguage.googleapis.com/v1beta/openai/embeddings",
}

func newGemini(c Config) (Provider, error) {
	if isGenerateContent(c.Endpoint) {
		return newGenerateContent("gemini", c, nil)
	}
	return buildOpenAI("gemini", c, geminiDefaults)
}

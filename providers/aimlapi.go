package providers

// AI/ML API speaks the OpenAI format at its own host; chat is served
// without a /v1 prefix (as APISIX calls it).
var aimlAPIDefaults = map[API]string{
	Chat: "https://api.aimlapi.com/chat/completions",
}

func newAIMLAPI(c Config) (Provider, error) {
	return buildOpenAI("aimlapi", c, aimlAPIDefaults)
}

package providers

import (
	"net/url"
	"strings"
)

// azureUsageSince is the first Azure OpenAI api-version that accepts
// stream_options; older ones answer 400 "Unknown parameter".
const azureUsageSince = "2024-10-21"

// newAzure serves Azure OpenAI. The deployment URL (with its api-version)
// differs per resource, so override.endpoint is required, and the deployment
// in the path picks the model.
func newAzure(c Config) (Provider, error) {
	if c.Endpoint == "" {
		return nil, &ConfError{Field: "override.endpoint", Msg: "is required for provider azure-openai (the deployment URL, e.g. https://<resource>.openai.azure.com/openai/deployments/<deployment>/chat/completions?api-version=2024-10-21)"}
	}
	p, err := buildOpenAI("azure-openai", c, openAICompatiblePaths)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(c.Endpoint)
	p.usageInStreams = azureAcceptsUsage(u.Query().Get("api-version"))
	return p, nil
}

// azureAcceptsUsage compares dated api-versions as text ("2024-02-15-preview"
// sorts before "2024-10-21"). No api-version means the v1 surface, which
// accepts stream_options.
func azureAcceptsUsage(apiVersion string) bool {
	if apiVersion == "" || !strings.HasPrefix(apiVersion, "20") {
		return true
	}
	return apiVersion >= azureUsageSince
}

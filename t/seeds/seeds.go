// Package seeds holds what both end-to-end lanes (the APISIX double and
// real APISIX) check against: the test credentials, the providers' hosts,
// the routes of conf/routes with those credentials filled in, and the seed
// documentation's examples with what each provider must receive.
package seeds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tidwall/gjson"
)

// Test credentials. The suites grep every log line for them: none may
// appear.
const (
	OpenAIKey   = "sk-openai-e2e-secret"
	DeepSeekKey = "sk-deepseek-e2e-secret"
	AzureKey    = "az-e2e-secret"
	GeminiKey   = "AIza-gemini-e2e-secret"
	LocalKey    = "sk-local-e2e-secret"
	// AnthropicKey is an x-api-key; the AWS pair signs Bedrock calls (the
	// key id is public by design: it is in every signed request).
	AnthropicKey   = "sk-ant-e2e-secret"
	AWSAccessKeyID = "AKIAE2EEXAMPLE"
	AWSSecretKey   = "aws-e2e-secret-key"
)

// Secrets lists the credentials above that must never be logged.
var Secrets = []string{OpenAIKey, DeepSeekKey, AzureKey, GeminiKey, LocalKey, AnthropicKey, AWSSecretKey}

// Provider hosts the seed routes use, each served by its own fake.
const (
	OpenAIHost   = "api.openai.com"
	DeepSeekHost = "api.deepseek.com"
	AzureHost    = "api7-auzre-openai.openai.azure.com"
	GeminiHost   = "generativelanguage.googleapis.com"
	VertexHost   = "us-central1-aiplatform.googleapis.com"
	// AWSRegion's Bedrock runtime.
	AnthropicHost = "api.anthropic.com"
	AWSRegion     = "us-east-1"
	BedrockHost   = "bedrock-runtime.us-east-1.amazonaws.com"
)

// Route reads conf/routes/<name>.json below root with the test credentials
// in place of its $VARIABLES.
func Route(root, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "conf", "routes", name+".json"))
	if err != nil {
		return "", err
	}
	var missing string
	route := os.Expand(string(b), func(v string) string {
		switch v {
		case "OPENAI_API_KEY":
			return OpenAIKey
		case "DEEPSEEK_API_KEY":
			return DeepSeekKey
		case "AZ_OPENAI_API_KEY":
			return AzureKey
		case "GEMINI_API_KEY":
			return GeminiKey
		case "LOCAL_LLM_API_KEY":
			return LocalKey
		case "ANTHROPIC_API_KEY":
			return AnthropicKey
		case "AWS_ACCESS_KEY_ID":
			return AWSAccessKeyID
		case "AWS_SECRET_ACCESS_KEY":
			return AWSSecretKey
		}
		missing = v
		return ""
	})
	if missing != "" {
		return "", fmt.Errorf("route %s uses unknown variable $%s", name, missing)
	}
	return route, nil
}

// Example is one example of the seed documentation: the route it loads,
// the client's request, and what the provider must receive.
type Example struct {
	Name     string
	Route    string // conf/routes/<Route>.json
	Path     string // client path
	Body     string // client body
	Host     string // provider host the fake sits at
	WantPath string // path and query the provider got
	// WantHeader is a credential header the provider must get exactly
	// once; empty for Vertex, whose token the lanes check themselves.
	WantHeader [2]string
	WantBody   string // body the provider got, compared by value
	// Check says what is wrong with the client's answer, "" if nothing.
	Check func(body string) string
}

func expect(ok bool, body string) string {
	if ok {
		return ""
	}
	return "client got " + body
}

// Examples are the seed's provider examples, chat and embeddings.
var Examples = []Example{
	{
		Name: "openai chat", Route: "openai", Path: "/anything",
		Body: `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}`,
		Host: OpenAIHost, WantPath: "/v1/chat/completions", WantHeader: [2]string{"Authorization", "Bearer " + OpenAIKey},
		WantBody: `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}],"model":"gpt-4"}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "model").String() == "gpt-4-0613" && gjson.Get(b, "choices.0.message.content").String() == "1+1 equals 2.", b)
		},
	},
	{
		Name: "deepseek chat", Route: "deepseek", Path: "/anything",
		Body: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}]}`,
		Host: DeepSeekHost, WantPath: "/chat/completions", WantHeader: [2]string{"Authorization", "Bearer " + DeepSeekKey},
		WantBody: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"model":"deepseek-chat"}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "choices.0.message.role").String() == "assistant" && gjson.Get(b, "usage.prompt_cache_hit_tokens").Exists(), b)
		},
	},
	{
		Name: "azure openai with every sampling parameter", Route: "azure-openai", Path: "/anything",
		Body: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"max_tokens":800,"temperature":0.7,"frequency_penalty":0,"presence_penalty":0,"top_p":0.95,"stop":null}`,
		Host: AzureHost, WantPath: "/openai/deployments/gpt-4/chat/completions?api-version=2024-02-15-preview", WantHeader: [2]string{"Api-Key", AzureKey},
		WantBody: `{"messages":[{"role":"system","content":"You are an AI assistant that helps people find information."},{"role":"user","content":"Write me a 50-word introduction for Apache APISIX."}],"max_tokens":800,"temperature":0.7,"frequency_penalty":0,"presence_penalty":0,"top_p":0.95,"stop":null,"model":"gpt-4"}`,
		Check:    func(b string) string { return expect(gjson.Get(b, "choices.0.message.content").String() != "", b) },
	},
	{
		Name: "gemini chat", Route: "gemini", Path: "/anything",
		Body: `{"messages":[{"role":"system","content":"You are a helpful AI assistant"},{"role":"user","content":"What is the capital of France?"}]}`,
		Host: GeminiHost, WantPath: "/v1beta/openai/chat/completions", WantHeader: [2]string{"Authorization", "Bearer " + GeminiKey},
		WantBody: `{"messages":[{"role":"system","content":"You are a helpful AI assistant"},{"role":"user","content":"What is the capital of France?"}],"model":"gemini-2.5-flash"}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "model").String() == "gemini-2.5-flash" && gjson.Get(b, "object").String() == "chat.completion", b)
		},
	},
	{
		Name: "vertex ai chat with a service account", Route: "vertex-ai", Path: "/anything",
		Body: `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}`,
		Host: VertexHost, WantPath: "/v1beta1/projects/api7-vertex/locations/us-central1/endpoints/openapi/chat/completions",
		WantBody: `{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}],"model":"google/gemini-2.5-flash"}`,
		Check:    func(b string) string { return expect(gjson.Get(b, "model").String() == "google/gemini-2.5-flash", b) },
	},
	{
		Name: "openai embeddings", Route: "openai-embeddings", Path: "/embeddings", Body: `{"input":"hello world"}`,
		Host: OpenAIHost, WantPath: "/v1/embeddings", WantHeader: [2]string{"Authorization", "Bearer " + OpenAIKey},
		WantBody: `{"input":"hello world","model":"text-embedding-3-small","encoding_format":"float"}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "object").String() == "list" && gjson.Get(b, "data.0.embedding").IsArray() &&
				gjson.Get(b, "usage.prompt_tokens").Int() == 2 && gjson.Get(b, "model").String() == "text-embedding-3-small", b)
		},
	},
	{
		Name: "gemini embeddings", Route: "gemini-embeddings", Path: "/embeddings", Body: `{"input":["hello world","bonjour"]}`,
		Host: GeminiHost, WantPath: "/v1beta/openai/embeddings", WantHeader: [2]string{"Authorization", "Bearer " + GeminiKey},
		WantBody: `{"input":["hello world","bonjour"],"model":"gemini-embedding-001"}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "data.#").Int() == 2 && gjson.Get(b, "data.1.index").Int() == 1, b)
		},
	},
	{
		Name: "vertex ai embeddings", Route: "vertex-ai-embeddings", Path: "/embeddings", Body: `{"input":"hello world"}`,
		Host: VertexHost, WantPath: "/v1/projects/api7-vertex/locations/us-central1/publishers/google/models/gemini-embedding-001:predict",
		WantBody: `{"instances":[{"content":"hello world"}]}`,
		Check: func(b string) string {
			return expect(gjson.Get(b, "object").String() == "list" && gjson.Get(b, "model").String() == "gemini-embedding-001" &&
				gjson.Get(b, "data.0.embedding").IsArray() && gjson.Get(b, "usage.total_tokens").Int() == 2, b)
		},
	},
}

// SameJSON compares two JSON texts by value.
func SameJSON(got []byte, want string) bool {
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

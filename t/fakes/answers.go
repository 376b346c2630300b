package fakes

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// words is the fake tokenizer: one token per whitespace-separated word of
// every message content string and text part (providers.md §8).
func words(s string) int { return len(strings.Fields(s)) }

func promptTokens(body []byte) int {
	n := 0
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		c := m.Get("content")
		if c.Type == gjson.String {
			n += words(c.Str)
		} else {
			c.ForEach(func(_, part gjson.Result) bool {
				n += words(part.Get("text").String())
				return true
			})
		}
		return true
	})
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type obj = map[string]any

func (p *Provider) usage(prompt, completion int) obj {
	u := obj{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
	switch p.opts.Flavor {
	case "gemini":
		u["total_tokens"] = prompt + completion + 18 // thinking counts only in the total
	case "deepseek":
		u["prompt_cache_hit_tokens"] = 0
		u["prompt_cache_miss_tokens"] = prompt
	case "vertex":
		u["extra_properties"] = obj{"google": obj{"traffic_type": "ON_DEMAND"}}
	}
	return u
}

func (p *Provider) chat(w http.ResponseWriter, r *http.Request, body []byte) {
	if !gjson.ValidBytes(body) || len(gjson.GetBytes(body, "messages").Array()) == 0 {
		p.apiError(w, 400, "invalid_request_error", "'messages' must be a non-empty array")
		return
	}
	model := gjson.GetBytes(body, "model").String()
	switch p.opts.Flavor {
	case "azure":
		v := r.URL.Query().Get("api-version")
		if strings.Contains(r.URL.Path, "/deployments/") && v == "" {
			p.apiError(w, 400, "invalid_request_error", "Missing required query parameter: api-version")
			return
		}
		if v != "" && v < "2024-10-21" && gjson.GetBytes(body, "stream_options").Exists() {
			writeJSON(w, 400, obj{"error": obj{"message": "Unknown parameter: 'stream_options'.", "type": "invalid_request_error", "param": "stream_options", "code": "unknown_parameter"}})
			return
		}
		model = "gpt-4o-2024-08-06" // the deployment picks the model
	case "vertex":
		if !strings.HasPrefix(model, "google/") {
			p.apiError(w, 400, "INVALID_ARGUMENT", "model must be of the form publisher/model")
			return
		}
	default:
		if model == "" {
			p.apiError(w, 400, "invalid_request_error", "you must provide a model parameter")
			return
		}
	}
	if alias, ok := p.opts.ModelAlias[model]; ok {
		model = alias
	}
	prompt, completion := promptTokens(body), words(p.opts.Reply)
	if gjson.GetBytes(body, "stream").Bool() {
		p.streamChat(w, body, model, prompt, completion)
		return
	}
	answer := obj{
		"id": "chatcmpl-fake", "object": "chat.completion", "created": 1723780938, "model": model,
		"choices": []obj{{"index": 0, "message": obj{"role": "assistant", "content": p.opts.Reply, "refusal": nil},
			"logprobs": nil, "finish_reason": "stop"}},
		"usage": p.usage(prompt, completion),
	}
	if p.opts.Flavor == "azure" {
		answer["prompt_filter_results"] = []obj{{"prompt_index": 0, "content_filter_results": obj{}}}
	}
	writeJSON(w, 200, answer)
}

func (p *Provider) streamChat(w http.ResponseWriter, body []byte, model string, prompt, completion int) {
	withUsage := gjson.GetBytes(body, "stream_options.include_usage").Bool()
	chunk := func(choices []obj, usage any) string {
		b, _ := json.Marshal(obj{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model, "choices": choices, "usage": usage})
		return string(b)
	}
	var events []string
	if p.opts.Flavor == "azure" {
		events = append(events, `{"id":"","object":"","created":0,"model":"","choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}`)
	}
	events = append(events, chunk([]obj{{"index": 0, "delta": obj{"role": "assistant", "content": ""}, "finish_reason": nil}}, nil))
	for i, word := range strings.Fields(p.opts.Reply) {
		if i > 0 {
			word = " " + word
		}
		events = append(events, chunk([]obj{{"index": 0, "delta": obj{"content": word}, "finish_reason": nil}}, nil))
	}
	usage := p.usage(prompt, completion)
	finish := []obj{{"index": 0, "delta": obj{}, "finish_reason": "stop"}}
	// DeepSeek and Gemini put usage on the finish chunk; OpenAI and Azure
	// send a usage-only chunk after it.
	if withUsage && (p.opts.Flavor == "deepseek" || p.opts.Flavor == "gemini") {
		events = append(events, chunk(finish, usage))
	} else {
		events = append(events, chunk(finish, nil))
		if withUsage {
			events = append(events, chunk([]obj{}, usage))
		}
	}
	events = append(events, "[DONE]")
	p.play(w, nil, &Reply{Events: events})
}

// vector is a deterministic embedding of text.
func vector(text string, dims int) []float64 {
	sum := sha256.Sum256([]byte(text))
	v := make([]float64, dims)
	for i := range v {
		v[i] = float64(int8(sum[i%len(sum)])) / 128
	}
	return v
}

func (p *Provider) embeddings(w http.ResponseWriter, body []byte) {
	in := gjson.GetBytes(body, "input")
	var inputs []string
	if in.Type == gjson.String {
		inputs = []string{in.Str}
	} else {
		in.ForEach(func(_, v gjson.Result) bool { inputs = append(inputs, v.String()); return true })
	}
	if len(inputs) == 0 || (len(inputs) == 1 && inputs[0] == "") {
		p.apiError(w, 400, "invalid_request_error", "'input' must not be empty")
		return
	}
	dims := 8
	if d := gjson.GetBytes(body, "dimensions").Int(); d > 0 {
		dims = int(d)
	}
	b64 := gjson.GetBytes(body, "encoding_format").String() == "base64"
	data := make([]obj, len(inputs))
	tokens := 0
	for i, text := range inputs {
		tokens += words(text)
		v := vector(text, dims)
		var emb any = v
		if b64 {
			raw := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(float32(f)))
			}
			emb = base64.StdEncoding.EncodeToString(raw)
		}
		data[i] = obj{"object": "embedding", "index": i, "embedding": emb}
	}
	answer := obj{"object": "list", "data": data, "model": gjson.GetBytes(body, "model").String()}
	if p.opts.Flavor != "gemini" { // Gemini's OpenAI surface reports no usage
		answer["usage"] = obj{"prompt_tokens": tokens, "total_tokens": tokens}
	}
	writeJSON(w, 200, answer)
}

// embedContent is Vertex's :embedContent for the gemini-embedding-2
// models: one content per call.
func (p *Provider) embedContent(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := gjson.GetBytes(body, "content.parts").Array()
	if len(parts) == 0 || gjson.GetBytes(body, "instances").Exists() {
		p.apiError(w, 400, "INVALID_ARGUMENT", "content.parts must not be empty")
		return
	}
	dims := 8
	if d := gjson.GetBytes(body, "outputDimensionality").Int(); d > 0 {
		dims = int(d)
	}
	var text strings.Builder
	for _, part := range parts {
		text.WriteString(part.Get("text").String())
	}
	writeJSON(w, 200, obj{"embedding": obj{"values": vector(text.String(), dims)}, "usageMetadata": obj{"promptTokenCount": words(text.String())}})
}

// predict is Vertex's publisher-model :predict for embeddings.
func (p *Provider) predict(w http.ResponseWriter, r *http.Request, body []byte) {
	model := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1 : strings.LastIndex(r.URL.Path, ":")]
	instances := gjson.GetBytes(body, "instances").Array()
	if len(instances) == 0 {
		p.apiError(w, 400, "INVALID_ARGUMENT", "instances must not be empty")
		return
	}
	if model == "gemini-embedding-001" && len(instances) > 1 {
		p.apiError(w, 400, "INVALID_ARGUMENT", "Only one instance is allowed per request for this model.")
		return
	}
	dims := 8
	if d := gjson.GetBytes(body, "parameters.outputDimensionality").Int(); d > 0 {
		dims = int(d)
	}
	preds := make([]obj, len(instances))
	chars := 0
	for i, inst := range instances {
		text := inst.Get("content").String()
		chars += len(text)
		preds[i] = obj{"embeddings": obj{"values": vector(text, dims), "statistics": obj{"token_count": float64(words(text)), "truncated": false}}}
	}
	writeJSON(w, 200, obj{"predictions": preds, "metadata": obj{"billableCharacterCount": chars}})
}

// apiError answers in the flavour's error shape.
func (p *Provider) apiError(w http.ResponseWriter, status int, code, msg string) {
	switch p.opts.Flavor {
	case "gemini":
		writeJSON(w, status, []obj{{"error": obj{"code": status, "message": msg, "status": code}}})
	case "vertex":
		writeJSON(w, status, obj{"error": obj{"code": status, "message": msg, "status": code}})
	case "azure":
		writeJSON(w, status, obj{"error": obj{"code": fmt.Sprint(code), "message": msg}})
	default:
		writeJSON(w, status, obj{"error": obj{"message": msg, "type": code, "param": nil, "code": nil}})
	}
}

func (p *Provider) authError(w http.ResponseWriter) {
	switch p.opts.Flavor {
	case "gemini":
		// A bad Gemini key is a 400, array-wrapped.
		writeJSON(w, 400, []obj{{"error": obj{"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
			"details": []obj{{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}}}}})
	case "vertex":
		writeJSON(w, 401, obj{"error": obj{"code": 401, "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "status": "UNAUTHENTICATED"}})
	case "azure":
		writeJSON(w, 401, obj{"error": obj{"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}})
	case "deepseek":
		writeJSON(w, 401, obj{"error": obj{"message": "Authentication Fails, Your api key is invalid", "type": "authentication_error", "param": nil, "code": "invalid_request_error"}})
	default:
		writeJSON(w, 401, obj{"error": obj{"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": nil, "code": "invalid_api_key"}})
	}
}

package providers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// ServiceAccountEnv holds a service-account JSON for vertex-ai routes that
// configure no auth.gcp (the variable APISIX itself uses).
const ServiceAccountEnv = "GCP_SERVICE_ACCOUNT"

// MsgServiceAccountRequired is the conf error of a vertex-ai route without
// credentials.
const MsgServiceAccountRequired = "is required for provider vertex-ai (or set " + ServiceAccountEnv + " in the runner's environment)"

// vertex serves Vertex AI: chat through its OpenAI-compatible endpoint,
// embeddings through the publisher model's :predict, converted both ways.
type vertex struct {
	*openAI // chat: options, usage in streams, auth.header
	// predict is the :predict URL with {model} left to fill in, or a fixed
	// URL when override.endpoint names one.
	predict      string
	predictFixed bool
	query        string // auth.query, encoded
	tokens       *tokenSource
}

var (
	validRegion = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// Project ids, numbers, and domain-scoped ids (example.com:my-project).
	validProject = regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]{0,127}$`)
)

// maxPredictInputs bounds the inputs of one embeddings request: Vertex's
// :predict takes at most 250 instances, and gemini-embedding-001 one per
// call, so each input may be an upstream call.
const maxPredictInputs = 250

func newVertex(c Config) (Provider, error) {
	if isGenerateContent(c.Endpoint) {
		tokens, err := vertexTokens(c)
		if err != nil {
			return nil, err
		}
		return newGenerateContent("vertex-ai", c, tokens)
	}
	v := &vertex{}
	var chatURL string
	var base *url.URL // scheme and host of every default URL
	if c.Endpoint != "" {
		u, err := parseEndpoint(c.Endpoint)
		if err != nil {
			return nil, err
		}
		switch {
		case u.Path == "" || u.Path == "/":
			base = u // a private or test host in front of the default paths
		case strings.HasSuffix(u.Path, ":predict"):
			v.predict, v.predictFixed = u.String(), true
		default:
			chatURL = u.String()
		}
	}
	pc := c.ProviderConf
	// Without a full override URL the location builds the default URLs; with
	// one, the location (when given) still serves the other API.
	if (chatURL == "" && v.predict == "") || pc.ProjectID != "" || pc.Region != "" {
		if pc.ProjectID == "" {
			return nil, &ConfError{Field: "provider_conf.project_id", Msg: "is required for provider vertex-ai unless override.endpoint gives the full URL"}
		}
		if pc.Region == "" {
			return nil, &ConfError{Field: "provider_conf.region", Msg: "is required for provider vertex-ai unless override.endpoint gives the full URL"}
		}
		// The region becomes part of the host the access token goes to.
		if !validRegion.MatchString(pc.Region) {
			return nil, &ConfError{Field: "provider_conf.region", Msg: "must be a Google Cloud location such as us-central1 (lower-case letters, digits, dashes)"}
		}
		if !validProject.MatchString(pc.ProjectID) {
			return nil, &ConfError{Field: "provider_conf.project_id", Msg: "must be a Google Cloud project id or number"}
		}
		if base == nil {
			base = &url.URL{Scheme: "https", Host: vertexHost(pc.Region)}
		}
		loc := "/projects/" + url.PathEscape(pc.ProjectID) + "/locations/" + url.PathEscape(pc.Region)
		if chatURL == "" {
			chatURL = base.Scheme + "://" + base.Host + "/v1beta1" + loc + "/endpoints/openapi/chat/completions"
		}
		if v.predict == "" {
			v.predict = base.Scheme + "://" + base.Host + "/v1" + loc + "/publishers/google/models/{model}:predict"
		}
	}
	chat, err := buildOpenAI("vertex-ai", Config{Endpoint: chatURL, Header: c.Header, Query: c.Query, Options: c.Options}, nil)
	if err != nil {
		return nil, err
	}
	chat.fixed = Chat
	v.openAI = chat
	if len(c.Query) > 0 {
		q := url.Values{}
		for k, val := range c.Query {
			q.Set(k, val)
		}
		v.query = q.Encode()
	}
	if v.tokens, err = vertexTokens(c); err != nil {
		return nil, err
	}
	return v, nil
}

// vertexHost is the API host of a location: "global" has no regional
// prefix and the us/eu multi-regions have their own hosts.
func vertexHost(region string) string {
	switch region {
	case "global":
		return "aiplatform.googleapis.com"
	case "us", "eu":
		return "aiplatform." + region + ".rep.googleapis.com"
	}
	return region + "-aiplatform.googleapis.com"
}

func vertexTokens(c Config) (*tokenSource, error) {
	field := "auth.gcp.service_account_json"
	var sa string
	early, maxTTL := defaultExpireEarly, time.Duration(0)
	if c.GCP != nil {
		sa = c.GCP.ServiceAccountJSON
		if c.GCP.ExpireEarlySecs != nil {
			early = time.Duration(*c.GCP.ExpireEarlySecs) * time.Second
		}
		if c.GCP.MaxTTL != nil {
			maxTTL = time.Duration(*c.GCP.MaxTTL) * time.Second
		}
	}
	if sa == "" {
		sa = os.Getenv(ServiceAccountEnv)
		field = ServiceAccountEnv + " (environment)"
	}
	if sa == "" {
		if _, ok := c.Header["Authorization"]; ok {
			return nil, nil // a static token in auth.header
		}
		return nil, &ConfError{Field: "auth.gcp.service_account_json", Msg: MsgServiceAccountRequired}
	}
	return sharedTokenSource([]byte(sa), early, maxTTL, field)
}

func (v *vertex) Authorize(ctx context.Context, req *http.Request) error {
	if err := v.openAI.Authorize(ctx, req); err != nil {
		return err
	}
	if v.tokens == nil {
		return nil
	}
	tok, err := v.tokens.Token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (v *vertex) Prepare(in Inbound) (*Outbound, error) {
	if err := checkObject(in.Body); err != nil {
		return nil, err
	}
	if in.Protocol == protocols.Embeddings || in.Protocol == protocols.ChatCompletions &&
		gjson.Get(view(in.Body), "input").Exists() && !gjson.Get(view(in.Body), "messages").Exists() {
		return v.prepareEmbeddings(in.Body)
	}
	return v.openAI.Prepare(in)
}

type predictInstance struct {
	Content string `json:"content"`
}

type predictParams struct {
	OutputDimensionality *int64 `json:"outputDimensionality,omitempty"`
}

type predictRequest struct {
	Instances  []predictInstance `json:"instances"`
	Parameters *predictParams    `json:"parameters,omitempty"`
}

// prepareEmbeddings turns an OpenAI embeddings request into :predict.
func (v *vertex) prepareEmbeddings(body []byte) (*Outbound, error) {
	if v.predict == "" {
		return nil, badRequest("unsupported_api", "this vertex-ai route has no :predict endpoint for embeddings; set provider_conf")
	}
	body, err := applyOptions(body, v.options)
	if err != nil {
		return nil, err
	}
	model := strings.TrimPrefix(gjson.GetBytes(body, "model").String(), "google/")
	if model == "" && !v.predictFixed {
		return nil, badRequest("invalid_body", "embeddings need a model (set options.model on the route or model in the body)")
	}
	inputs, err := embeddingInputs(gjson.GetBytes(body, "input"))
	if err != nil {
		return nil, err
	}
	if len(inputs) > maxPredictInputs {
		return nil, badRequest("invalid_body", "at most %d inputs per embeddings request on vertex-ai, got %d", maxPredictInputs, len(inputs))
	}
	var params *predictParams
	if d := gjson.GetBytes(body, "dimensions"); d.Exists() {
		if d.Type != gjson.Number || d.Num < 1 || d.Num != math.Trunc(d.Num) {
			return nil, badRequest("invalid_body", "dimensions must be a positive integer")
		}
		n := d.Int()
		params = &predictParams{OutputDimensionality: &n}
	}
	format := gjson.GetBytes(body, "encoding_format").String()
	if format != "" && format != "float" && format != "base64" {
		return nil, badRequest("invalid_body", "encoding_format must be float or base64")
	}

	target := v.predict
	if !v.predictFixed {
		target = strings.Replace(target, "{model}", url.PathEscape(model), 1)
	}
	if v.query != "" {
		target += querySep(target) + v.query
	}
	o := &Outbound{API: Embeddings, URL: target, Model: model}
	if strings.HasPrefix(model, "gemini-embedding-2") {
		// The gemini-embedding-2 models are served by :embedContent, one
		// input per call, not by :predict.
		o.URL = strings.Replace(target, ":predict", ":embedContent", 1)
		o.Convert = func(answers [][]byte) ([]byte, error) {
			return embedContentToOpenAI(answers, model, format == "base64")
		}
		for _, in := range inputs {
			part, _ := json.Marshal(embedContentRequest{Content: embedContent{Parts: []embedPart{{Text: in}}}, OutputDimensionality: dimsOf(params)})
			o.Parts = append(o.Parts, part)
		}
		return o, nil
	}
	o.Convert = func(answers [][]byte) ([]byte, error) {
		return predictToOpenAI(answers, len(inputs), model, format == "base64")
	}
	instances := make([]predictInstance, len(inputs))
	for i, in := range inputs {
		instances[i] = predictInstance{Content: in}
	}
	// gemini-embedding-001 takes one instance per call.
	if model == "gemini-embedding-001" && len(inputs) > 1 {
		for _, inst := range instances {
			part, _ := json.Marshal(predictRequest{Instances: []predictInstance{inst}, Parameters: params})
			o.Parts = append(o.Parts, part)
		}
		return o, nil
	}
	o.Body, _ = json.Marshal(predictRequest{Instances: instances, Parameters: params})
	return o, nil
}

type embedPart struct {
	Text string `json:"text"`
}

type embedContent struct {
	Parts []embedPart `json:"parts"`
}

type embedContentRequest struct {
	Content              embedContent `json:"content"`
	OutputDimensionality *int64       `json:"outputDimensionality,omitempty"`
}

func dimsOf(p *predictParams) *int64 {
	if p == nil {
		return nil
	}
	return p.OutputDimensionality
}

// embedContentToOpenAI converts :embedContent answers, one per input in
// order, into the OpenAI embeddings list.
func embedContentToOpenAI(answers [][]byte, model string, b64 bool) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"object":"list","data":[`)
	var tokens int64
	for i, a := range answers {
		if !gjson.ValidBytes(a) {
			return nil, fmt.Errorf("embedContent answer is not JSON")
		}
		values := gjson.GetBytes(a, "embedding.values")
		if !values.IsArray() {
			return nil, fmt.Errorf("embedContent answer %d has no embedding.values", i)
		}
		tokens += gjson.GetBytes(a, "usageMetadata.promptTokenCount").Int()
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"object":"embedding","index":%d,"embedding":`, i)
		if b64 {
			enc, err := float32Base64(values)
			if err != nil {
				return nil, fmt.Errorf("embedding %d: %w", i, err)
			}
			buf.WriteString(`"` + enc + `"`)
		} else if err := json.Compact(&buf, []byte(values.Raw)); err != nil {
			return nil, fmt.Errorf("embedding %d: %w", i, err)
		}
		buf.WriteByte('}')
	}
	m, _ := json.Marshal(model)
	fmt.Fprintf(&buf, `],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, m, tokens, tokens)
	return buf.Bytes(), nil
}

func querySep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

func embeddingInputs(in gjson.Result) ([]string, error) {
	switch {
	case in.Type == gjson.String:
		return []string{in.Str}, nil
	case in.IsArray():
		items := in.Array()
		if len(items) == 0 {
			return nil, badRequest("invalid_body", "input must not be empty")
		}
		out := make([]string, len(items))
		for i, it := range items {
			if it.Type != gjson.String {
				return nil, badRequest("invalid_body", "input must be a string or an array of strings: Vertex AI has no token-array input")
			}
			out[i] = it.Str
		}
		return out, nil
	}
	return nil, badRequest("invalid_body", "input must be a string or an array of strings")
}

// predictToOpenAI converts :predict answers (one per call, predictions in
// input order) into the OpenAI embeddings list. Vectors are copied as the
// provider wrote them, so no precision is lost; base64 is little-endian
// float32, as OpenAI encodes it.
func predictToOpenAI(answers [][]byte, want int, model string, b64 bool) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"object":"list","data":[`)
	var tokens int64
	index := 0
	for _, a := range answers {
		if !gjson.ValidBytes(a) {
			return nil, fmt.Errorf("predict answer is not JSON")
		}
		preds := gjson.GetBytes(a, "predictions")
		if !preds.IsArray() {
			return nil, fmt.Errorf("predict answer has no predictions")
		}
		for _, p := range preds.Array() {
			values := p.Get("embeddings.values")
			if !values.IsArray() {
				return nil, fmt.Errorf("prediction %d has no embeddings.values", index)
			}
			// token_count is a protobuf Value: a JSON number, maybe 2.0.
			tokens += int64(p.Get("embeddings.statistics.token_count").Float())
			if index > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(`{"object":"embedding","index":`)
			buf.WriteString(strconv.Itoa(index))
			buf.WriteString(`,"embedding":`)
			if b64 {
				enc, err := float32Base64(values)
				if err != nil {
					return nil, fmt.Errorf("prediction %d: %w", index, err)
				}
				buf.WriteByte('"')
				buf.WriteString(enc)
				buf.WriteByte('"')
			} else if err := json.Compact(&buf, []byte(values.Raw)); err != nil {
				return nil, fmt.Errorf("prediction %d: %w", index, err)
			}
			buf.WriteByte('}')
			index++
		}
	}
	if index != want {
		return nil, fmt.Errorf("predict answered %d embeddings for %d inputs", index, want)
	}
	m, _ := json.Marshal(model)
	fmt.Fprintf(&buf, `],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, m, tokens, tokens)
	return buf.Bytes(), nil
}

func float32Base64(values gjson.Result) (string, error) {
	items := values.Array()
	raw := make([]byte, 4*len(items))
	for i, v := range items {
		if v.Type != gjson.Number {
			return "", fmt.Errorf("embedding value %d is not a number", i)
		}
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(v.Num)))
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// vertexRoute converts a seed Vertex route with the test service account
// (and extra auth.gcp settings) in auth.gcp, as an operator would with jq.
func (e *env) vertexRoute(t *testing.T, seed string, gcp map[string]any) {
	t.Helper()
	route := readSeed(t, seed)
	route, _ = sjson.Set(route, `plugins.ai-proxy.auth.gcp.service_account_json`, string(e.saJSON))
	for k, v := range gcp {
		route, _ = sjson.Set(route, `plugins.ai-proxy.auth.gcp.`+k, v)
	}
	e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, route))
}

const vertexChatPath = "/v1beta1/projects/api7-vertex/locations/us-central1/endpoints/openapi/chat/completions"

// The seed's Vertex chat example, with the service account taken from the
// runner's GCP_SERVICE_ACCOUNT as conf/routes/vertex-ai.json expects.
func TestSeedVertexChat(t *testing.T) {
	e := newEnv(t, withServiceAccountEnv)
	e.putRoute(t, "vertex-ai")
	resp := e.post(t, "/anything", seedMathBody)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s\n%s", resp.StatusCode, body, e.output.String())
	}
	if gjson.Get(body, "model").String() != "google/gemini-2.5-flash" || gjson.Get(body, "usage.extra_properties.google.traffic_type").String() != "ON_DEMAND" {
		t.Errorf("client got %s", body)
	}
	got := e.lastRequest(t, vertexHost)
	if got.Path != vertexChatPath || gjson.GetBytes(got.Body, "model").String() != "google/gemini-2.5-flash" {
		t.Errorf("vertex got %s %s", got.Path, got.Body)
	}
	if a := got.Header.Get("Authorization"); !strings.HasPrefix(a, "Bearer ya29.") || !e.token.Valid(strings.TrimPrefix(a, "Bearer ")) {
		t.Errorf("vertex got Authorization %q", a)
	}
	if n := e.token.Calls(); n != 1 {
		t.Errorf("%d token requests", n)
	}

	// Streaming works as for OpenAI.
	resp = e.post(t, "/anything", `{"messages":[{"role":"user","content":"What is 1+1?"}],"stream":true}`)
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	if n := e.token.Calls(); n != 1 {
		t.Errorf("the cached token was not reused: %d token requests", n)
	}
}

// The seed's Vertex embeddings example: OpenAI in, :predict upstream,
// OpenAI list out.
func TestSeedVertexEmbeddings(t *testing.T) {
	e := newEnv(t)
	e.vertexRoute(t, "vertex-ai-embeddings", nil)

	resp := e.post(t, "/embeddings", `{"input":"hello world"}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := e.lastRequest(t, vertexHost)
	if got.Path != "/v1/projects/api7-vertex/locations/us-central1/publishers/google/models/gemini-embedding-001:predict" ||
		!sameJSON(t, got.Body, `{"instances":[{"content":"hello world"}]}`) {
		t.Errorf("vertex got %s %s", got.Path, got.Body)
	}
	if gjson.Get(body, "object").String() != "list" || gjson.Get(body, "model").String() != "gemini-embedding-001" ||
		gjson.Get(body, "data.0.object").String() != "embedding" || !gjson.Get(body, "data.0.embedding").IsArray() ||
		gjson.Get(body, "usage.prompt_tokens").Int() != 2 || gjson.Get(body, "usage.total_tokens").Int() != 2 {
		t.Errorf("client got %s", body)
	}
	if v := e.lastAccess(t).UpstreamHeader.Get("X-LLM-Total-Tokens"); v != "2" {
		t.Errorf("X-LLM-Total-Tokens = %q", v)
	}

	// gemini-embedding-001 takes one input per call: three inputs, three
	// calls, one answer in input order; dimensions and base64 honoured.
	before := e.fakes[vertexHost].Count()
	resp = e.post(t, "/embeddings", `{"input":["a b","c","d e f"],"dimensions":4,"encoding_format":"base64"}`)
	body = readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if n := e.fakes[vertexHost].Count() - before; n != 3 {
		t.Errorf("%d predict calls for 3 inputs", n)
	}
	for i := range 3 {
		raw, err := base64.StdEncoding.DecodeString(gjson.Get(body, "data."+string(rune('0'+i))+".embedding").String())
		if err != nil || len(raw) != 16 || gjson.Get(body, "data."+string(rune('0'+i))+".index").Int() != int64(i) {
			t.Errorf("item %d: %v %d bytes", i, err, len(raw))
		}
	}
	if gjson.Get(body, "usage.total_tokens").Int() != 6 {
		t.Errorf("usage %s", gjson.Get(body, "usage").Raw)
	}
	for _, r := range e.fakes[vertexHost].Requests()[before:] {
		if gjson.GetBytes(r.Body, "parameters.outputDimensionality").Int() != 4 || gjson.GetBytes(r.Body, "instances.#").Int() != 1 {
			t.Errorf("predict body %s", r.Body)
		}
	}
}

// A cold cache under 50 concurrent requests makes one token request.
func TestVertexTokenSingleFlight(t *testing.T) {
	e := newEnv(t)
	e.vertexRoute(t, "vertex-ai", nil)
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := e.post(t, "/anything", seedMathBody)
			readAll(t, resp)
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("status %d", c)
		}
	}
	if n := e.token.Calls(); n != 1 {
		t.Fatalf("%d token requests for 50 concurrent calls", n)
	}
}

// A token within expire_early_secs of its end is replaced in the
// background while calls go on with it.
func TestVertexTokenRefreshedBeforeExpiry(t *testing.T) {
	e := newEnv(t)
	e.token.SetExpiresIn(30 * time.Second) // always inside a 60 s early window
	e.vertexRoute(t, "vertex-ai", map[string]any{"expire_early_secs": 60})
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 2 && time.Now().Before(deadline) {
		resp := e.post(t, "/anything", seedMathBody)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		seen[e.lastRequest(t, vertexHost).Header.Get("Authorization")] = true
	}
	if len(seen) < 2 {
		t.Fatalf("the token was never refreshed: %v", seen)
	}
}

// Token endpoint down: 502 naming the cause, the key never shown; the
// next request tries again and succeeds.
func TestVertexTokenEndpointDownThenUp(t *testing.T) {
	e := newEnv(t)
	e.vertexRoute(t, "vertex-ai", nil)
	e.token.Fail(1)
	resp := e.post(t, "/anything", seedMathBody)
	body := readAll(t, resp)
	if resp.StatusCode != 502 || gjson.Get(body, "error.code").String() != "upstream_auth_failed" ||
		!strings.Contains(body, "token") || strings.Contains(body, "PRIVATE") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if n := e.fakes[vertexHost].Count(); n != 0 {
		t.Fatalf("vertex got %d requests without a token", n)
	}
	resp = e.post(t, "/anything", seedMathBody)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
	}
}

// A malformed service account is a conf error naming the field: the
// converter refuses it, and a route written by hand answers every request
// with the error.
func TestVertexBadServiceAccount(t *testing.T) {
	e := newEnv(t)
	route := readSeed(t, "vertex-ai")
	route, _ = sjson.Set(route, `plugins.ai-proxy.auth.gcp.service_account_json`, `{"type":"service_account","private_key":"nope"}`)
	if out, err := runRoute(route); err == nil || !strings.Contains(out, "auth.gcp.service_account_json") {
		t.Fatalf("converter: %v %s", err, out)
	}
	value, _ := json.Marshal(gjson.Get(route, `plugins.ai-proxy`).Raw)
	e.admin(t, "PUT", "/apisix/admin/routes/vbad", `{"uri":"/vbad","plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy","value":`+string(value)+`}]}},"upstream_id":"ai-proxy-relay"}`)
	resp := e.post(t, "/vbad", seedMathBody)
	body := readAll(t, resp)
	if resp.StatusCode != 500 || gjson.Get(body, "error.param").String() != "auth.gcp.service_account_json" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// The gemini-embedding-2 models answer at :embedContent, one input per
// call; the client still gets one OpenAI embeddings list in input order.
func TestVertexEmbedContent(t *testing.T) {
	e := newEnv(t)
	route := readSeed(t, "vertex-ai-embeddings")
	route, _ = sjson.Set(route, `plugins.ai-proxy.auth.gcp.service_account_json`, string(e.saJSON))
	route, _ = sjson.Set(route, `plugins.ai-proxy.options.model`, "gemini-embedding-2-preview")
	e.admin(t, "PUT", "/apisix/admin/routes", convertRoute(t, route))
	resp := e.post(t, "/embeddings", `{"input":["a b","c d e"],"dimensions":4}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	reqs := e.fakes[vertexHost].Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d calls for 2 inputs", len(reqs))
	}
	for _, r := range reqs {
		if !strings.HasSuffix(r.Path, "/models/gemini-embedding-2-preview:embedContent") || gjson.GetBytes(r.Body, "outputDimensionality").Int() != 4 ||
			gjson.GetBytes(r.Body, "content.parts.0.text").String() == "" {
			t.Errorf("vertex got %s %s", r.Path, r.Body)
		}
	}
	if gjson.Get(body, "object").String() != "list" || gjson.Get(body, "data.#").Int() != 2 || gjson.Get(body, "data.1.index").Int() != 1 ||
		len(gjson.Get(body, "data.0.embedding").Array()) != 4 || gjson.Get(body, "usage.prompt_tokens").Int() != 5 {
		t.Errorf("client got %s", body)
	}
}

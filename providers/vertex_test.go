package providers

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func testServiceAccount(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "api7-vertex", "private_key_id": "kid1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "docs@api7-vertex.iam.gserviceaccount.com", "token_uri": "http://127.0.0.1:1/token",
	})
	return string(sa)
}

func vertexConf(t *testing.T, region, endpoint string, opts ...Option) Config {
	return Config{
		Endpoint:     endpoint,
		ProviderConf: ProviderConf{ProjectID: "api7-vertex", Region: region},
		GCP:          &GCPAuth{ServiceAccountJSON: testServiceAccount(t)},
		Options:      opts,
	}
}

func TestVertexURLs(t *testing.T) {
	tests := []struct {
		region, endpoint, body, want string
	}{
		{"us-central1", "", `{"messages":[]}`, "https://us-central1-aiplatform.googleapis.com/v1beta1/projects/api7-vertex/locations/us-central1/endpoints/openapi/chat/completions"},
		{"global", "", `{"messages":[]}`, "https://aiplatform.googleapis.com/v1beta1/projects/api7-vertex/locations/global/endpoints/openapi/chat/completions"},
		{"eu", "", `{"messages":[]}`, "https://aiplatform.eu.rep.googleapis.com/v1beta1/projects/api7-vertex/locations/eu/endpoints/openapi/chat/completions"},
		{"us-central1", "", `{"input":"x","model":"gemini-embedding-001"}`, "https://us-central1-aiplatform.googleapis.com/v1/projects/api7-vertex/locations/us-central1/publishers/google/models/gemini-embedding-001:predict"},
		{"us-central1", "", `{"input":"x","model":"google/text-embedding-005"}`, "https://us-central1-aiplatform.googleapis.com/v1/projects/api7-vertex/locations/us-central1/publishers/google/models/text-embedding-005:predict"},
		{"us-central1", "http://127.0.0.1:8080", `{"input":"x","model":"m"}`, "http://127.0.0.1:8080/v1/projects/api7-vertex/locations/us-central1/publishers/google/models/m:predict"},
	}
	for _, tt := range tests {
		p := mustNew(t, "vertex-ai", vertexConf(t, tt.region, tt.endpoint))
		out, err := p.Prepare(inbound([]byte(tt.body)))
		if err != nil {
			t.Fatal(err)
		}
		if out.URL != tt.want {
			t.Errorf("%s %s: %s", tt.region, tt.body, out.URL)
		}
	}
}

func TestVertexConfErrors(t *testing.T) {
	good := testServiceAccount(t)
	tests := []struct {
		name  string
		conf  Config
		field string
	}{
		{"no project", Config{ProviderConf: ProviderConf{Region: "us-central1"}, GCP: &GCPAuth{ServiceAccountJSON: good}}, "provider_conf.project_id"},
		{"no region", Config{ProviderConf: ProviderConf{ProjectID: "p"}, GCP: &GCPAuth{ServiceAccountJSON: good}}, "provider_conf.region"},
		{"no credentials", Config{ProviderConf: ProviderConf{ProjectID: "p", Region: "r"}}, "auth.gcp.service_account_json"},
		{"malformed json", Config{ProviderConf: ProviderConf{ProjectID: "p", Region: "r"}, GCP: &GCPAuth{ServiceAccountJSON: `{"type":`}}, "auth.gcp.service_account_json"},
		{"not a service account", Config{ProviderConf: ProviderConf{ProjectID: "p", Region: "r"}, GCP: &GCPAuth{ServiceAccountJSON: `{"type":"authorized_user"}`}}, "auth.gcp.service_account_json"},
		{"bad key", Config{ProviderConf: ProviderConf{ProjectID: "p", Region: "r"}, GCP: &GCPAuth{ServiceAccountJSON: strings.Replace(good, "PRIVATE KEY-----\\n", "PRIVATE KEY-----\\nAAAA", 1)}}, "auth.gcp.service_account_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(ServiceAccountEnv, "")
			_, err := New("vertex-ai", tt.conf)
			var ce *ConfError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("err = %v, want field %s", err, tt.field)
			}
			if strings.Contains(err.Error(), "PRIVATE") {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func TestVertexServiceAccountFromEnv(t *testing.T) {
	t.Setenv(ServiceAccountEnv, testServiceAccount(t))
	if _, err := New("vertex-ai", Config{ProviderConf: ProviderConf{ProjectID: "p", Region: "r"}}); err != nil {
		t.Fatal(err)
	}
}

func TestVertexEmbeddingsRequest(t *testing.T) {
	p := mustNew(t, "vertex-ai", vertexConf(t, "us-central1", "", Option{Key: "model", Raw: []byte(`"gemini-embedding-001"`)}))

	out, err := p.Prepare(inbound([]byte(`{"input":"hello world","dimensions":768}`)))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Body) != `{"instances":[{"content":"hello world"}],"parameters":{"outputDimensionality":768}}` || out.Parts != nil {
		t.Fatalf("body %s parts %d", out.Body, len(out.Parts))
	}

	// gemini-embedding-001 takes one instance per call: an array fans out.
	out, err = p.Prepare(inbound([]byte(`{"input":["a","b","c"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Parts) != 3 || string(out.Parts[2]) != `{"instances":[{"content":"c"}]}` {
		t.Fatalf("parts %q", out.Parts)
	}

	for _, bad := range []string{`{"input":[1,2]}`, `{"input":[]}`, `{"input":{"a":1}}`, `{"input":"x","dimensions":0}`, `{"input":"x","encoding_format":"int8"}`} {
		var pe *Error
		if _, err := p.Prepare(inbound([]byte(bad))); !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestPredictToOpenAI(t *testing.T) {
	a1 := []byte(`{"predictions":[{"embeddings":{"values":[-0.0241838414222,0.5],"statistics":{"token_count":2,"truncated":false}}}]}`)
	a2 := []byte(`{"predictions":[{"embeddings":{"values":[1.25,-2],"statistics":{"token_count":3.0}}}]}`)
	got, err := predictToOpenAI([][]byte{a1, a2}, 2, "gemini-embedding-001", false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[-0.0241838414222,0.5]},{"object":"embedding","index":1,"embedding":[1.25,-2]}],"model":"gemini-embedding-001","usage":{"prompt_tokens":5,"total_tokens":5}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	got, err = predictToOpenAI([][]byte{a2}, 1, "m", true)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(gjson.GetBytes(got, "data.0.embedding").String())
	if len(raw) != 8 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != -2 {
		t.Fatalf("base64 %x", raw)
	}

	if _, err := predictToOpenAI([][]byte{a1}, 2, "m", false); err == nil {
		t.Error("missing prediction accepted")
	}
	if _, err := predictToOpenAI([][]byte{[]byte(`<html>`)}, 1, "m", false); err == nil {
		t.Error("garbage accepted")
	}
}

package fakeprovider

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Vertex paths (providers.md §5): everything lives under a project and a
// location; chat is OpenAI-compatible under endpoints/openapi, embeddings
// are :predict on a publisher model.
var (
	vertexPath     = regexp.MustCompile(`^/(?:v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/(.+)$`)
	vertexEndpoint = regexp.MustCompile(`^endpoints/[^/]+/(chat/completions|embeddings)$`)
	vertexPredict  = regexp.MustCompile(`^publishers/google/models/([^/:]+):predict$`)
)

// maxPredictInstances is Vertex's limit for text embedding models.
const maxPredictInstances = 250

// oneInstanceModel accepts a single instance per :predict request.
const oneInstanceModel = "gemini-embedding-001"

func (s *Server) serveVertex(w http.ResponseWriter, r *http.Request, body []byte) bool {
	m := vertexPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return s.fail(w, s.flavor.notFound(r.Method, r.URL.Path))
	}
	if msg := vertexHostMismatch(r.Host, m[2]); msg != "" {
		return s.fail(w, s.flavor.invalid(invalid{msg: msg}))
	}
	if e := vertexEndpoint.FindStringSubmatch(m[3]); e != nil {
		if e[1] == "chat/completions" {
			return s.chat(w, r, body, "")
		}
		return s.embeddings(w, body, "")
	}
	if p := vertexPredict.FindStringSubmatch(m[3]); p != nil {
		return s.predict(w, p[1], body)
	}
	return s.fail(w, s.flavor.notFound(r.Method, r.URL.Path))
}

// vertexHostMismatch checks that a request addressed to a real Vertex host
// names the location that host serves: {region}-aiplatform.googleapis.com
// for a region, the bare aiplatform.googleapis.com for "global" (APISIX's
// "global-aiplatform" would be a bug the fake should catch). Other hosts
// (loopback in unit tests) are not checked.
func vertexHostMismatch(hostport, location string) string {
	const bare = "aiplatform.googleapis.com"
	host := hostOnly(hostport)
	var serves string
	switch {
	case host == bare:
		serves = "global"
	case strings.HasSuffix(host, "-"+bare):
		serves = strings.TrimSuffix(host, "-"+bare)
	default:
		return ""
	}
	if serves == location {
		return ""
	}
	return fmt.Sprintf("Location %q does not match the endpoint host %s (serves %q).", location, host, serves)
}

// predict answers :predict for text embedding models.
func (s *Server) predict(w http.ResponseWriter, model string, body []byte) bool {
	bad := func(format string, args ...any) bool {
		return s.fail(w, s.flavor.invalid(invalid{msg: fmt.Sprintf(format, args...)}))
	}
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return bad("Invalid JSON payload received.")
	}
	instances := gjson.GetBytes(body, "instances")
	n := len(instances.Array())
	switch {
	case !instances.IsArray() || n == 0:
		return bad("instances must be a non-empty list.")
	case model == oneInstanceModel && n > 1:
		return bad("Unable to submit request because the model %s supports only 1 instance per request; got %d.", model, n)
	case n > maxPredictInstances:
		return bad("Unable to submit request because it has %d instances; at most %d are allowed.", n, maxPredictInstances)
	}
	dims, badDims := dimensions(gjson.GetBytes(body, "parameters.outputDimensionality"), "outputDimensionality")
	if badDims != nil {
		return bad("%s", badDims.msg)
	}

	var preds strings.Builder
	preds.WriteByte('[')
	chars := 0
	for i, inst := range instances.Array() {
		content := inst.Get("content")
		if content.Type != gjson.String || content.String() == "" {
			return bad("instances[%d].content must be a non-empty string.", i)
		}
		if i > 0 {
			preds.WriteByte(',')
		}
		text := content.String()
		// token_count is a JSON number, as in a protobuf Value.
		fmt.Fprintf(&preds, `{"embeddings":{"statistics":{"truncated":false,"token_count":%d},"values":%s}}`,
			Words(text), floatList(Vector(text, dims)))
		chars += utf8.RuneCountInString(text)
	}
	preds.WriteByte(']')

	out := setRaw(`{"predictions":[],"metadata":{"billableCharacterCount":0}}`, "predictions", preds.String())
	out = set(out, "metadata.billableCharacterCount", chars)
	writeJSON(w, http.StatusOK, out)
	return false
}

package fakeprovider

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// maxEmbeddingInputs is OpenAI's limit on items per embeddings request.
const maxEmbeddingInputs = 2048

// maxDims bounds dimensions / outputDimensionality, so a typo cannot make
// the fake allocate gigabytes.
const maxDims = 4096

// Vector is the embedding the fake returns for text: dims floats derived
// from SHA-256 of the text, scaled to unit length like real embeddings.
// The same text always gives the same vector, in every flavour and in
// :predict, so tests can compute what they expect. dims <= 0 means
// DefaultDims. Token-id inputs use their JSON text (e.g. "[1,2,3]").
func Vector(text string, dims int) []float32 {
	if dims <= 0 {
		dims = DefaultDims
	}
	v := make([]float64, dims)
	var block [sha256.Size]byte
	norm := 0.0
	for i := range v {
		const perBlock = sha256.Size / 4
		if i%perBlock == 0 {
			block = sha256.Sum256(fmt.Appendf(nil, "%d\x00%s", i/perBlock, text))
		}
		u := binary.LittleEndian.Uint32(block[(i%perBlock)*4:])
		v[i] = float64(u)/(1<<32)*2 - 1
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	out := make([]float32, dims)
	for i := range v {
		out[i] = float32(v[i] / norm)
	}
	return out
}

// floatList renders float32s so that parsing them back as float32 gives
// the same bits as the base64 form.
func floatList(v []float32) string {
	b := []byte{'['}
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
	}
	return string(append(b, ']'))
}

// base64Floats is OpenAI's encoding_format "base64": little-endian float32.
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// embeddingInput is one item of "input": the text the vector derives from
// and its token count.
type embeddingInput struct {
	text   string
	tokens int
}

var badInput = invalid{msg: "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", param: "input"}

// parseEmbeddingInput accepts OpenAI's four input forms: a string, an
// array of strings, an array of token ids, an array of token-id arrays.
// Empty strings and empty arrays are rejected, as OpenAI does.
func parseEmbeddingInput(in gjson.Result) ([]embeddingInput, *invalid) {
	switch {
	case !in.Exists():
		return nil, &invalid{msg: "Missing required parameter: 'input'.", param: "input", code: "missing_required_parameter"}
	case in.Type == gjson.String:
		if in.String() == "" {
			return nil, &badInput
		}
		return []embeddingInput{{in.String(), Words(in.String())}}, nil
	case !in.IsArray():
		return nil, &badInput
	}
	items := in.Array()
	if len(items) == 0 {
		return nil, &badInput
	}
	if len(items) > maxEmbeddingInputs {
		return nil, &invalid{msg: fmt.Sprintf("Invalid 'input': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", maxEmbeddingInputs, len(items)), param: "input", code: "array_above_max_length"}
	}
	if tokenIDs(in) {
		return []embeddingInput{{in.Raw, len(items)}}, nil
	}
	out := make([]embeddingInput, len(items))
	for i, item := range items {
		switch {
		case item.Type == gjson.String && item.String() != "":
			out[i] = embeddingInput{item.String(), Words(item.String())}
		case tokenIDs(item):
			out[i] = embeddingInput{item.Raw, len(item.Array())}
		default:
			return nil, &badInput
		}
	}
	return out, nil
}

// tokenIDs reports whether v is a non-empty array of numbers.
func tokenIDs(v gjson.Result) bool {
	items := v.Array()
	if !v.IsArray() || len(items) == 0 {
		return false
	}
	for _, t := range items {
		if t.Type != gjson.Number {
			return false
		}
	}
	return true
}

// dimensions reads an optional positive integer field.
func dimensions(v gjson.Result, param string) (int, *invalid) {
	if !v.Exists() {
		return DefaultDims, nil
	}
	if v.Type != gjson.Number || v.Float() != math.Trunc(v.Float()) || v.Int() < 1 || v.Int() > maxDims {
		return 0, &invalid{msg: fmt.Sprintf("Invalid '%s': expected an integer between 1 and %d.", param, maxDims), param: param, code: "invalid_value"}
	}
	return int(v.Int()), nil
}

// embeddings answers POST .../embeddings in the OpenAI list shape.
func (s *Server) embeddings(w http.ResponseWriter, body []byte, deployment string) bool {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return s.fail(w, s.flavor.invalid(invalid{msg: "We could not parse the JSON body of your request."}))
	}
	inputs, bad := parseEmbeddingInput(gjson.GetBytes(body, "input"))
	if bad != nil {
		return s.fail(w, s.flavor.invalid(*bad))
	}
	model := gjson.GetBytes(body, "model").String()
	if deployment == "" && model == "" {
		return s.fail(w, s.flavor.invalid(invalid{msg: "you must provide a model parameter"}))
	}
	format := gjson.GetBytes(body, "encoding_format").String()
	if format != "" && format != "float" && format != "base64" {
		return s.fail(w, s.flavor.invalid(invalid{msg: fmt.Sprintf("Invalid value for 'encoding_format': %q. Supported values are: 'float' and 'base64'.", format), param: "encoding_format", code: "invalid_value"}))
	}
	dims, bad := dimensions(gjson.GetBytes(body, "dimensions"), "dimensions")
	if bad != nil {
		return s.fail(w, s.flavor.invalid(*bad))
	}

	var data strings.Builder
	data.WriteByte('[')
	tokens := 0
	for i, in := range inputs {
		if i > 0 {
			data.WriteByte(',')
		}
		vec := Vector(in.text, dims)
		enc := floatList(vec)
		if format == "base64" {
			enc = strconv.Quote(base64Floats(vec))
		}
		fmt.Fprintf(&data, `{"object":"embedding","index":%d,"embedding":%s}`, i, enc)
		tokens += in.tokens
	}
	data.WriteByte(']')

	out := setRaw(`{"object":"list","data":[],"model":""}`, "data", data.String())
	out = set(out, "model", s.responseModel(model, deployment, AzureEmbeddingModel))
	if !s.flavor.noEmbeddingUsage {
		out = setRaw(out, "usage", fmt.Sprintf(`{"prompt_tokens":%d,"total_tokens":%d}`, tokens, tokens))
	}
	writeJSON(w, http.StatusOK, out)
	return false
}

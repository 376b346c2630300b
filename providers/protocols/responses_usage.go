package protocols

import (
	"errors"

	"github.com/tidwall/gjson"
)

// ResponsesUsage reads OpenAI Responses answers that the relay passes
// through to a Responses client untranslated: only the model, the usage and
// where the stream ends. It cannot encode requests: a provider that does not
// speak Responses gets them translated into chat completions instead.
var ResponsesUsage Upstream = responsesUsage{}

type responsesUsage struct{}

func (responsesUsage) Protocol() Protocol { return Responses }

func (responsesUsage) EncodeRequest(*Request) ([]byte, error) {
	return nil, errors.New("responses requests are passed through, never encoded")
}

func (responsesUsage) DecodeResponse(body []byte) (*Response, error) {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, errors.New("responses answer is not a JSON object")
	}
	r := &Response{ID: root.Get("id").Str, Model: root.Get("model").Str}
	if u := root.Get("usage"); u.IsObject() {
		r.Usage, r.UsageSeen = responsesUsageOf(u), true
	}
	return r, nil
}

func responsesUsageOf(u gjson.Result) Usage {
	return Usage{
		Input:     u.Get("input_tokens").Int(),
		Output:    u.Get("output_tokens").Int(),
		CacheRead: u.Get("input_tokens_details.cached_tokens").Int(),
		Reasoning: u.Get("output_tokens_details.reasoning_tokens").Int(),
	}
}

func (responsesUsage) NewDecoder() Decoder { return responsesUsageDecoder{} }

type responsesUsageDecoder struct{}

// Event reads the events that carry the response object; the many delta
// events between them are passed over without parsing.
func (responsesUsageDecoder) Event(ds []Delta, name string, data []byte) ([]Delta, bool, error) {
	if name == "" {
		name = gjson.GetBytes(data, "type").Str
	}
	switch name {
	case "response.created":
		resp := gjson.GetBytes(data, "response")
		return append(ds, Delta{ID: resp.Get("id").Str, Model: resp.Get("model").Str}), false, nil
	case "response.completed", "response.incomplete", "response.failed":
		resp := gjson.GetBytes(data, "response")
		d := Delta{Model: resp.Get("model").Str}
		if u := resp.Get("usage"); u.IsObject() {
			usage := responsesUsageOf(u)
			d.Usage = &usage
		}
		return append(ds, d), true, nil
	case "error":
		return ds, true, errors.New(gjson.GetBytes(data, "message").Str)
	}
	return ds, false, nil
}

func (responsesUsage) ErrorMessage(body []byte) string {
	return gjson.GetBytes(body, "error.message").Str
}

package providers

import (
	"errors"
	"net/http"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// hubOptions are the conf options that mean the same in every protocol:
// with translation they go into the hub request, so each lands in the
// provider's own field (Bedrock's inferenceConfig.maxTokens, Gemini's
// generationConfig...). Other options are fields of the provider's body.
var hubOptions = map[string]func(r *protocols.Request, v gjson.Result) bool{
	"model": func(r *protocols.Request, v gjson.Result) bool {
		r.Model = v.Str
		return v.Type == gjson.String && v.Str != ""
	},
	"max_tokens":            setMaxTokens,
	"max_completion_tokens": setMaxTokens,
	"max_output_tokens":     setMaxTokens,
	"temperature": func(r *protocols.Request, v gjson.Result) bool {
		f := v.Num
		r.Temperature = &f
		return v.Type == gjson.Number
	},
	"top_p": func(r *protocols.Request, v gjson.Result) bool {
		f := v.Num
		r.TopP = &f
		return v.Type == gjson.Number
	},
}

func setMaxTokens(r *protocols.Request, v gjson.Result) bool {
	r.MaxTokens = int(v.Int())
	return v.Type == gjson.Number && v.Num >= 1 && v.Num == float64(int(v.Num))
}

// translated prepares a call whose client protocol the provider does not
// speak: the client's body is decoded into the hub, the route's options
// applied, and the result encoded in the provider's protocol. URL is left
// to the caller, which may need the model to build it.
func translated(in Inbound, up protocols.Upstream, options []Option) (*Outbound, error) {
	cl := ClientOf(in.Protocol)
	if cl == nil || up == nil {
		return nil, badRequest("unsupported_api", "%s requests cannot be translated for this provider", in.Protocol)
	}
	if err := checkObject(in.Body); err != nil {
		return nil, err
	}
	req, err := cl.DecodeRequest(in.Body)
	if err != nil {
		return nil, asBadRequest(err)
	}
	var rest []Option
	for _, o := range options {
		set, ok := hubOptions[o.Key]
		if !ok {
			rest = append(rest, o)
			continue
		}
		if !set(req, gjson.ParseBytes(o.Raw)) {
			return nil, badRequest("invalid_conf", "options.%s has a value the provider's protocol cannot take", o.Key)
		}
	}
	body, err := up.EncodeRequest(req)
	if err != nil {
		return nil, asBadRequest(err)
	}
	if body, err = applyOptions(body, rest); err != nil {
		return nil, err
	}
	return &Outbound{
		API: Chat, Body: body, Model: req.Model, Stream: req.Stream,
		Client: in.Protocol, Upstream: up.Protocol(),
		Reader: up, Writer: cl, Hub: req,
	}, nil
}

// asBadRequest turns a codec's refusal into the relay's 400.
func asBadRequest(err error) error {
	var pe *protocols.Error
	if errors.As(err, &pe) {
		status := pe.Status
		if status == 0 {
			status = http.StatusBadRequest
		}
		return &Error{Status: status, Code: "invalid_request", Msg: pe.Msg}
	}
	return badRequest("invalid_request", "%v", err)
}

// native prepares a call the provider takes in the client's own protocol:
// the body is sent as the client wrote it, options merged, and read only to
// learn the model, usage and time to first token.
func native(in Inbound, reader protocols.Upstream, options []Option) (*Outbound, error) {
	if err := checkObject(in.Body); err != nil {
		return nil, err
	}
	body, err := applyOptions(in.Body, options)
	if err != nil {
		return nil, err
	}
	return &Outbound{
		API: Chat, Body: body,
		Model:  gjson.GetBytes(body, "model").String(),
		Stream: gjson.GetBytes(body, "stream").Bool(),
		Client: in.Protocol, Upstream: in.Protocol, Reader: reader,
	}, nil
}

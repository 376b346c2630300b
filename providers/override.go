package providers

import (
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// Overrides are APISIX 3.18's override.llm_options and override.request_body:
// fields the route sets in the body the provider gets, whatever protocol
// that is.
type Overrides struct {
	// MaxTokens is override.llm_options.max_tokens, put in the provider's
	// own field for it; 0 = none.
	MaxTokens int
	// Bodies are override.request_body: per provider protocol, an object
	// merged into the provider's body (objects merged key by key).
	Bodies map[protocols.Protocol][]byte
	// Force is override.request_body_force_override: the route's values
	// replace the client's; otherwise they only fill what the client left
	// out.
	Force bool
}

func (o Overrides) empty() bool { return o.MaxTokens == 0 && len(o.Bodies) == 0 }

// overridden applies a route's Overrides to every call its provider
// prepares.
type overridden struct {
	Provider
	o Overrides
}

func (p overridden) Prepare(in Inbound) (*Outbound, error) {
	out, err := p.Provider.Prepare(in)
	if err != nil || len(out.Parts) > 0 {
		return out, err
	}
	proto := out.Upstream
	if proto == "" {
		proto = protocols.ChatCompletions
		if out.API == Embeddings {
			proto = protocols.Embeddings
		}
	}
	body := out.Body
	if p.o.MaxTokens > 0 && proto != protocols.Embeddings {
		// A translated call's body always has the field (some protocols
		// require it): whether the client set it is the hub's to say.
		set := out.Hub != nil && out.Hub.MaxTokens > 0
		path := maxTokensPath(proto, p.Provider.Name())
		if out.Hub == nil {
			set = gjson.GetBytes(body, path).Exists() ||
				proto == protocols.ChatCompletions && (gjson.GetBytes(body, "max_tokens").Exists() || gjson.GetBytes(body, "max_completion_tokens").Exists())
		}
		if p.o.Force || !set {
			if proto == protocols.ChatCompletions {
				// One limit, in the field this provider reads.
				body, _ = sjson.DeleteBytes(body, "max_tokens")
				body, _ = sjson.DeleteBytes(body, "max_completion_tokens")
			}
			if body, err = sjson.SetBytes(body, path, p.o.MaxTokens); err != nil {
				return nil, badRequest("invalid_body", "cannot set override.llm_options.max_tokens: %v", err)
			}
		}
	}
	if patch, ok := p.o.Bodies[proto]; ok {
		if body, err = mergeInto(body, patch, p.o.Force); err != nil {
			return nil, badRequest("invalid_body", "cannot apply override.request_body.%s: %v", proto, err)
		}
	}
	out.Body = body
	return out, nil
}

// maxTokensPath is where a protocol takes its answer's token limit. OpenAI
// itself has replaced max_tokens with max_completion_tokens (its reasoning
// models refuse the old name); OpenAI-compatible servers know only the old.
func maxTokensPath(p protocols.Protocol, provider string) string {
	switch p {
	case protocols.Responses:
		return "max_output_tokens"
	case protocols.Converse:
		return "inferenceConfig.maxTokens"
	case protocols.GenerateContent:
		return "generationConfig.maxOutputTokens"
	case protocols.ChatCompletions:
		if provider == "openai" {
			return "max_completion_tokens"
		}
	}
	return "max_tokens"
}

// mergeInto merges the JSON object patch into the object body: nested
// objects key by key, other values replacing the body's only when force is
// set or the body has none.
func mergeInto(body, patch []byte, force bool) ([]byte, error) {
	var err error
	gjson.ParseBytes(patch).ForEach(func(k, v gjson.Result) bool {
		path := escapePath(k.String())
		cur := gjson.GetBytes(body, path)
		switch {
		case cur.IsObject() && v.IsObject():
			var merged []byte
			if merged, err = mergeInto([]byte(cur.Raw), []byte(v.Raw), force); err == nil {
				body, err = sjson.SetRawBytes(body, path, merged)
			}
		case force || !cur.Exists():
			body, err = sjson.SetRawBytes(body, path, []byte(v.Raw))
		}
		return err == nil
	})
	return body, err
}

// escapePath makes a key one literal sjson path element.
func escapePath(k string) string {
	if !strings.ContainsAny(k, `.*?|#@\:!=<>%`) {
		return k
	}
	var b strings.Builder
	for _, r := range k {
		if strings.ContainsRune(`.*?|#@\:!=<>%`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

package providers

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// bedrock serves Amazon Bedrock's Converse API, signed with SigV4. Converse
// clients pass through; chat, Messages and Responses clients are
// translated. The model goes in the URL, not the body.
type bedrock struct {
	base    string // scheme and host
	region  string
	options []Option
	model   string // options.model
	signer  *AWSSigner
}

func newBedrock(c Config) (Provider, error) {
	region := c.ProviderConf.Region
	p := &bedrock{region: region}
	if c.Endpoint != "" {
		u, err := parseEndpoint(c.Endpoint)
		if err != nil {
			return nil, err
		}
		p.base = u.Scheme + "://" + u.Host
	}
	if region == "" {
		return nil, &ConfError{Field: "provider_conf.region", Msg: "is required for provider bedrock (the AWS region that signs the calls, e.g. us-east-1)"}
	}
	if !validRegion.MatchString(region) {
		return nil, &ConfError{Field: "provider_conf.region", Msg: "must be an AWS region such as us-east-1"}
	}
	if p.base == "" {
		p.base = "https://bedrock-runtime." + region + ".amazonaws.com"
	}
	for _, o := range c.Options {
		if o.Key == "model" {
			// The model names the URL; the body must not carry it.
			p.model = gjson.ParseBytes(o.Raw).String()
			continue
		}
		p.options = append(p.options, o)
	}
	var err error
	if p.signer, err = NewAWSSigner(region, c.AWS); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *bedrock) Name() string { return "bedrock" }

func (p *bedrock) Prepare(in Inbound) (*Outbound, error) {
	var o *Outbound
	var err error
	model := p.model
	switch in.Protocol {
	case protocols.Converse:
		if o, err = native(in, protocols.BedrockConverse, p.options); err != nil {
			return nil, err
		}
		// A Converse client names the model and the streaming in its path.
		o.Stream = strings.HasSuffix(strings.TrimRight(in.Path, "/"), "/converse-stream")
		if model == "" {
			model = converseModel(in.Path)
		}
	case protocols.Embeddings:
		return nil, badRequest("unsupported_api", "provider bedrock serves chat through Converse only")
	default:
		if o, err = translated(in, protocols.BedrockConverse, p.options); err != nil {
			return nil, err
		}
		if model == "" {
			model = o.Model
		}
	}
	if model == "" {
		return nil, badRequest("invalid_body", "bedrock needs a model id or inference profile (options.model on the route, or model in the request)")
	}
	o.Model = model
	o.URL = BedrockURL(p.base, p.region, model, o.Stream)
	o.EventStream = o.Stream
	return o, nil
}

// converseModel is the model of a Converse path, /model/{id}/converse.
func converseModel(path string) string {
	i := strings.LastIndex(path, "/model/")
	if i < 0 {
		return ""
	}
	rest := path[i+len("/model/"):]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 {
		return ""
	}
	m, err := url.PathUnescape(rest[:j])
	if err != nil {
		return ""
	}
	return m
}

// Authorize signs the call: SigV4 covers the body, so it is read back from
// the request.
func (p *bedrock) Authorize(ctx context.Context, req *http.Request) error {
	var body []byte
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return err
		}
		body, err = io.ReadAll(rc)
		if err != nil {
			return err
		}
	}
	return p.signer.Sign(ctx, req, body)
}

package aiproxy

import (
	"crypto/rand"
	"fmt"
	"math"
	"net/textproto"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
)

// Defaults of the ai-proxy schema.
const (
	defaultTimeout          = 30 * time.Second
	defaultKeepaliveTimeout = 60 * time.Second
	// A stream silent this long has stalled (providers send keep-alive
	// comments while they think); without it a stall is held until
	// APISIX's upstream read timeout.
	defaultStreamIdle    = 120 * time.Second
	defaultKeepalivePool = 30
	// 16 MiB holds a chat with several base64 images; a route that needs
	// more says so in max_req_body_size.
	defaultMaxReqBody = 16 << 20
	// bufferedResponseCap bounds answers the relay must hold whole (non-stream
	// bodies: their usage goes into response headers) when the conf sets no
	// max_response_bytes.
	bufferedResponseCap = 64 << 20
)

// Conf is one parsed ai-proxy or ai-proxy-multi route conf. It is built
// once per conf token and shared by every request of that route.
type Conf struct {
	ID confID
	// Plugin is the plugin the conf belongs to, for errors and logs.
	Plugin string
	// Instances are the provider targets: one for ai-proxy, in conf
	// order for ai-proxy-multi.
	Instances []*Instance
	// Pool chooses among Instances (ai-proxy-multi); nil = Instances[0].
	Pool     *balance.Pool
	Fallback Fallback
	// Hash is how the pre-req filter finds the chash key; nil for other
	// balancers.
	Hash *HashKey

	Timeout          time.Duration // whole non-stream call; wait for a stream's first event
	MaxReqBodySize   int64
	MaxResponseBytes int64         // 0 = streams unbounded, buffered answers capped at bufferedResponseCap
	MaxStreamTime    time.Duration // 0 = unbounded
	StreamIdle       time.Duration // longest silence between stream events; 0 = unbounded
	Keepalive        bool
	KeepaliveTimeout time.Duration
	KeepalivePool    int
	SSLVerify        bool
	LogSummaries     bool
	LogPayloads      bool

	// routeID is the APISIX route id, asked of APISIX on the conf's first
	// request; it names the route in the call log.
	routeID atomic.Pointer[string]

	// Err is set when the conf is invalid: the plugin then answers every
	// request of the route with it instead of letting the request through.
	Err *providers.ConfError
}

// Instance is one provider target: a provider, its credentials and options.
type Instance struct {
	Name         string // "" for ai-proxy
	ProviderName string
	Provider     providers.Provider
	// RouteModel is options.model: the model the instance forces, if any.
	RouteModel string
	health     *balance.Health
}

type confID [16]byte

// Field sets of the schemas. Unknown fields are errors, as APISIX's
// schemas (additionalProperties: false) make them: a misspelt "override"
// would otherwise send the route's key to the provider's default host.
var (
	instanceFields = []string{"provider", "auth", "options", "override", "provider_conf"}
	sharedFields   = []string{
		"timeout", "keepalive", "keepalive_timeout", "keepalive_pool", "ssl_verify",
		"logging", "max_req_body_size", "max_response_bytes", "max_stream_duration_ms",
		"stream_idle_timeout_ms", "streaming_flush_interval_ms",
	}
	multiFields = []string{
		"instances", "balancer", "fallback_strategy", "fallback_http_statuses",
		"max_retries", "retry_on_failure_within_ms",
	}
	multiInstanceFields = []string{"name", "priority", "weight", "models", "checks"}
)

func fieldSet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, f := range l {
			m[f] = true
		}
	}
	return m
}

// schema maps an object's path (relative to where checking starts; "" is
// that object) to its allowed fields; a nil set is a free-form map (header
// names, body options). Paths not listed are not descended into.
type schema map[string]map[string]bool

// instanceObjects are the objects inside a provider target.
var instanceObjects = schema{
	"auth":                  fieldSet([]string{"header", "query", "gcp", "aws"}),
	"auth.gcp":              fieldSet([]string{"service_account_json", "expire_early_secs", "max_ttl"}),
	"auth.aws":              fieldSet([]string{"access_key_id", "secret_access_key", "session_token"}),
	"auth.header":           nil,
	"auth.query":            nil,
	"options":               nil,
	"override":              fieldSet([]string{"endpoint", "llm_options", "request_body", "request_body_force_override"}),
	"override.llm_options":  fieldSet([]string{"max_tokens"}),
	"override.request_body": fieldSet(bodyProtocols),
	"provider_conf":         fieldSet([]string{"project_id", "region"}),
	"logging":               fieldSet([]string{"summaries", "payloads"}),
}

func extend(base schema, top map[string]bool, more schema) schema {
	s := schema{"": top}
	for k, v := range base {
		s[k] = v
	}
	for k, v := range more {
		s[k] = v
	}
	return s
}

var (
	aiProxySchema = extend(instanceObjects, fieldSet(instanceFields, sharedFields), nil)
	multiSchema   = schema{
		"":         fieldSet(sharedFields, multiFields),
		"logging":  instanceObjects["logging"],
		"balancer": fieldSet([]string{"algorithm", "hash_on", "key"}),
	}
	multiInstanceSchema = extend(instanceObjects, fieldSet(instanceFields, multiInstanceFields), nil)
)

// checkFields rejects unknown and repeated fields in obj (at path) and in
// the schema's objects below it. Repeated keys are ambiguous: JSON decoders
// disagree on which one counts. prefix names obj in errors.
func checkFields(obj gjson.Result, s schema, path, prefix string) *providers.ConfError {
	allowed := s[path]
	join := func(k string) string {
		if k == "" {
			k = `""`
		}
		if path == "" {
			return k
		}
		return path + "." + k
	}
	type child struct {
		path string
		obj  gjson.Result
	}
	var unknown []string
	var children []child
	obj.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		if allowed != nil && !allowed[name] {
			unknown = append(unknown, name)
		}
		if _, ok := s[join(name)]; ok && v.IsObject() {
			children = append(children, child{join(name), v})
		}
		return true
	})
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return &providers.ConfError{Field: prefix + join(unknown[0]), Msg: "unknown field"}
	}
	if dup, ok := providers.DuplicateKey(obj); ok {
		return &providers.ConfError{Field: prefix + join(dup), Msg: "appears more than once"}
	}
	for _, c := range children {
		if err := checkFields(c.obj, s, c.path, prefix); err != nil {
			return err
		}
	}
	return nil
}

// ParseConf parses and validates an ai-proxy conf (the JSON value of the
// ext-plugin conf entry). It always returns a Conf; an invalid one carries
// Err and no instance.
func ParseConf(in []byte) *Conf {
	c := newConf(Name)
	root, err := parseRoot(in, aiProxySchema)
	if err == nil {
		err = c.parseSingle(root)
	}
	if err != nil {
		c.Err, c.Instances = err, nil
	}
	return c
}

func newConf(plugin string) *Conf {
	c := &Conf{Plugin: plugin}
	// One id per parsed conf, i.e. per APISIX conf token: each token is one
	// route version, so the relay can tell routes apart even when two
	// carry the same conf.
	if _, err := rand.Read(c.ID[:]); err != nil {
		panic("ai-proxy: no randomness for conf ids: " + err.Error())
	}
	return c
}

func parseRoot(in []byte, s schema) (gjson.Result, *providers.ConfError) {
	if !gjson.ValidBytes(in) {
		return gjson.Result{}, &providers.ConfError{Field: "conf", Msg: "is not valid JSON"}
	}
	root := gjson.ParseBytes(in)
	if !root.IsObject() {
		return root, &providers.ConfError{Field: "conf", Msg: "must be a JSON object"}
	}
	return root, checkFields(root, s, "", "")
}

func (c *Conf) parseSingle(root gjson.Result) *providers.ConfError {
	v := &validator{root: root}
	c.parseShared(v)
	inst := parseInstance(v)
	if v.err != nil {
		return v.err
	}
	c.Instances = []*Instance{inst}
	return nil
}

// parseShared reads the fields every route has, whatever its instances.
func (c *Conf) parseShared(v *validator) {
	v.object("logging", false)
	c.Timeout = v.millis("timeout", 1, defaultTimeout)
	c.Keepalive = v.boolean("keepalive", true)
	c.KeepaliveTimeout = v.millis("keepalive_timeout", 1000, defaultKeepaliveTimeout)
	c.KeepalivePool = v.intOr("keepalive_pool", 1, defaultKeepalivePool)
	c.SSLVerify = v.boolean("ssl_verify", true)
	// Summaries are on unless a route turns them off: every call gets its
	// log line by default.
	c.LogSummaries = v.boolean("logging.summaries", true)
	c.LogPayloads = v.boolean("logging.payloads", false)
	c.MaxReqBodySize = int64(v.intOr("max_req_body_size", 1, defaultMaxReqBody))
	c.MaxResponseBytes = int64(v.intOr("max_response_bytes", 0, 0))
	c.MaxStreamTime = v.millis("max_stream_duration_ms", 0, 0)
	c.StreamIdle = v.millis("stream_idle_timeout_ms", 0, defaultStreamIdle)
	// The relay writes every event as it arrives, which is what APISIX's
	// streaming_flush_interval_ms: 0 asks for; the field is accepted so
	// routes copy over, and checked.
	v.intOr("streaming_flush_interval_ms", 0, 0)
}

// bodyProtocols are the keys of override.request_body: the provider
// protocols a patch applies to (APISIX 3.18's names).
var bodyProtocols = []string{
	string(protocols.ChatCompletions), string(protocols.Embeddings), string(protocols.Responses),
	string(protocols.Messages), string(protocols.Converse), string(protocols.GenerateContent),
}

// parseInstance reads a provider target from v's root: ai-proxy's top
// level or one ai-proxy-multi instance. It returns nil when v has an error.
func parseInstance(v *validator) *Instance {
	inst := &Instance{ProviderName: v.str("provider", true)}
	if m := v.get("options.model"); m.Type == gjson.String {
		inst.RouteModel = m.Str
	}
	pc := providers.Config{
		Endpoint: v.str("override.endpoint", false),
		Header:   v.headers("auth.header"),
		Query:    v.strMap("auth.query"),
		Options:  v.options("options"),
		ProviderConf: providers.ProviderConf{
			ProjectID: v.str("provider_conf.project_id", false),
			Region:    v.str("provider_conf.region", false),
		},
	}
	v.object("auth", true)
	v.object("override", false)
	v.object("provider_conf", false)
	if v.object("auth.gcp", false) {
		pc.GCP = &providers.GCPAuth{ServiceAccountJSON: v.str("auth.gcp.service_account_json", false)}
		if n, ok := v.integer("auth.gcp.expire_early_secs", 0); ok {
			pc.GCP.ExpireEarlySecs = &n
		}
		if n, ok := v.integer("auth.gcp.max_ttl", 1); ok {
			pc.GCP.MaxTTL = &n
		}
	}
	if v.object("auth.aws", false) {
		pc.AWS = &providers.AWSAuth{
			AccessKeyID:     v.str("auth.aws.access_key_id", false),
			SecretAccessKey: v.str("auth.aws.secret_access_key", false),
			SessionToken:    v.str("auth.aws.session_token", false),
		}
	}
	if v.object("override.llm_options", false) {
		pc.Overrides.MaxTokens, _ = v.integer("override.llm_options.max_tokens", 1)
	}
	if v.object("override.request_body", false) {
		pc.Overrides.Bodies = map[protocols.Protocol][]byte{}
		for _, name := range bodyProtocols {
			if v.object("override.request_body."+name, false) {
				pc.Overrides.Bodies[protocols.Protocol(name)] = []byte(v.get("override.request_body." + name).Raw)
			}
		}
	}
	pc.Overrides.Force = v.boolean("override.request_body_force_override", false)
	if v.err != nil {
		return nil
	}
	p, err := providers.New(inst.ProviderName, pc)
	if err != nil {
		if ce, ok := err.(*providers.ConfError); ok {
			v.fail(ce.Field, "%s", ce.Msg)
		} else {
			v.fail("provider", "%s", err.Error())
		}
		return nil
	}
	inst.Provider = p
	return inst
}

// validator reads typed fields and keeps the first error, which names the
// field by its dotted path.
type validator struct {
	root gjson.Result
	// prefix names root in errors ("instances[1].").
	prefix string
	err    *providers.ConfError
}

func (v *validator) fail(field, format string, args ...any) {
	if v.err == nil {
		v.err = &providers.ConfError{Field: v.prefix + field, Msg: fmt.Sprintf(format, args...)}
	}
}

// get reads a field by dotted path; the path's own dots are separators,
// which is right for the schema's fixed nesting.
func (v *validator) get(path string) gjson.Result { return v.root.Get(path) }

func (v *validator) object(path string, required bool) bool {
	r := v.get(path)
	switch {
	case !r.Exists():
		if required {
			v.fail(path, "is required")
		}
		return false
	case !r.IsObject():
		v.fail(path, "must be an object")
		return false
	}
	return true
}

func (v *validator) str(path string, required bool) string {
	r := v.get(path)
	switch {
	case !r.Exists():
		if required {
			v.fail(path, "is required")
		}
		return ""
	case r.Type != gjson.String:
		v.fail(path, "must be a string")
		return ""
	case required && r.Str == "":
		v.fail(path, "must not be empty")
	}
	return r.Str
}

func (v *validator) strMap(path string) map[string]string {
	if !v.object(path, false) {
		return nil
	}
	m := map[string]string{}
	v.get(path).ForEach(func(k, val gjson.Result) bool {
		if val.Type != gjson.String {
			v.fail(path+"."+k.String(), "must be a string")
			return false
		}
		if strings.ContainsAny(k.Str+val.Str, "\r\n") {
			v.fail(path+"."+k.String(), "must not contain line breaks")
			return false
		}
		m[k.Str] = val.Str
		return true
	})
	return m
}

// forbiddenAuthHeaders are headers the relay sets itself or that frame
// the request: a route cannot send them.
var forbiddenAuthHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Content-Type": true, "Expect": true,
}

// headers reads auth.header: valid header names (RFC 9110 tokens) and
// values, none the relay must control. A bad one would otherwise pass here
// and fail every request of the route.
func (v *validator) headers(path string) map[string]string {
	m := v.strMap(path)
	for name, val := range m {
		switch {
		case !isToken(name):
			v.fail(path+"."+name, "is not a valid header name")
		case forbiddenAuthHeaders[textproto.CanonicalMIMEHeaderKey(name)]:
			v.fail(path+"."+name, "is set by the relay and cannot be configured")
		case strings.ContainsFunc(val, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
			v.fail(path+"."+name, "has a control character in its value")
		}
	}
	return m
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func (v *validator) options(path string) []providers.Option {
	if !v.object(path, false) {
		return nil
	}
	var opts []providers.Option
	v.get(path).ForEach(func(k, val gjson.Result) bool {
		if k.Str == "model" && val.Type != gjson.String {
			v.fail(path+".model", "must be a string")
			return false
		}
		opts = append(opts, providers.Option{Key: k.Str, Raw: []byte(val.Raw)})
		return true
	})
	return opts
}

func (v *validator) boolean(path string, def bool) bool {
	r := v.get(path)
	if !r.Exists() {
		return def
	}
	if !r.IsBool() {
		v.fail(path, "must be a boolean")
		return def
	}
	return r.Bool()
}

// integer reads a whole number >= min; ok is false when absent or invalid.
func (v *validator) integer(path string, min int) (int, bool) {
	r := v.get(path)
	if !r.Exists() {
		return 0, false
	}
	if r.Type != gjson.Number || r.Num != math.Trunc(r.Num) || r.Num > math.MaxInt32*1024 {
		v.fail(path, "must be an integer")
		return 0, false
	}
	if r.Num < float64(min) {
		v.fail(path, "must be at least %d", min)
		return 0, false
	}
	return int(r.Num), true
}

func (v *validator) intOr(path string, min, def int) int {
	if n, ok := v.integer(path, min); ok {
		return n
	}
	return def
}

func (v *validator) millis(path string, min int, def time.Duration) time.Duration {
	if n, ok := v.integer(path, min); ok {
		return time.Duration(n) * time.Millisecond
	}
	return def
}

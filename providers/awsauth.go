package providers

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// AWSAuth is a route's auth.aws: static credentials. Left out (or empty),
// the SDK's default credential chain supplies them.
type AWSAuth struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token"`
}

// bedrockService is the SigV4 signing name of bedrock-runtime.
const bedrockService = "bedrock"

// credentialsExpiryWindow refreshes temporary credentials (web identity,
// ECS, EC2 role, SSO) this long before they expire, so no call is signed
// with credentials that lapse while it travels.
const credentialsExpiryWindow = 5 * time.Minute

// AWSSigner signs Bedrock calls with SigV4. It is built once per route conf
// and is safe for concurrent use: the credentials sit in the SDK's
// CredentialsCache, which refreshes them before they expire and runs one
// refresh at a time.
type AWSSigner struct {
	region string
	signer *v4.Signer
	now    func() time.Time // time.Now; tests pin it

	mu    sync.Mutex
	creds aws.CredentialsProvider // nil until the default chain is loaded
}

// NewAWSSigner makes a signer for region. Static credentials are used as
// they are; nil or empty ones select the SDK's default chain (environment,
// shared config and credentials files, web identity / IRSA, ECS, EC2
// instance role), loaded on first use so a route conf never waits on it.
// Errors name the conf field and never echo a credential.
func NewAWSSigner(region string, static *AWSAuth) (*AWSSigner, error) {
	if region == "" {
		return nil, &ConfError{Field: "provider_conf.region", Msg: "is required to sign AWS calls (e.g. us-east-1)"}
	}
	s := &AWSSigner{region: region, signer: v4.NewSigner(), now: time.Now}
	if static == nil || (static.AccessKeyID == "" && static.SecretAccessKey == "" && static.SessionToken == "") {
		return s, nil
	}
	switch {
	case static.AccessKeyID == "":
		return nil, &ConfError{Field: "auth.aws.access_key_id", Msg: "is required with auth.aws.secret_access_key (or leave auth.aws out to use the default credential chain)"}
	case static.SecretAccessKey == "":
		return nil, &ConfError{Field: "auth.aws.secret_access_key", Msg: "is required with auth.aws.access_key_id (or leave auth.aws out to use the default credential chain)"}
	}
	s.creds = aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(static.AccessKeyID, static.SecretAccessKey, static.SessionToken))
	return s, nil
}

// provider returns the credentials provider, loading the default chain on
// first use. A failed load is not kept: the next call tries again.
func (s *AWSSigner) provider(ctx context.Context) (aws.CredentialsProvider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creds != nil {
		return s.creds, nil
	}
	// LoadDefaultConfig only reads the environment and the shared files;
	// the chain's network sources run when credentials are retrieved.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(s.region),
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = credentialsExpiryWindow }))
	if err != nil {
		return nil, fmt.Errorf("loading the AWS default credential chain: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("the AWS default credential chain found no credentials")
	}
	s.creds = cfg.Credentials
	return s.creds, nil
}

// signedHeader says which request headers the signature covers, besides
// host and content-length that the signer always takes. Only these must
// reach AWS unchanged; anything a proxy or the transport adds or rewrites
// (User-Agent, Accept-Encoding, X-Forwarded-*) stays outside.
func signedHeader(name string) bool {
	switch k := http.CanonicalHeaderKey(name); {
	case k == "Content-Type", k == "Content-Encoding", k == "Accept":
		return true
	case k == "Authorization", k == "X-Amz-Date", k == "X-Amz-Security-Token":
		return false // set afresh by every signing
	default:
		return strings.HasPrefix(k, "X-Amz-") || strings.HasPrefix(k, "X-Amzn-")
	}
}

// Sign signs req for Bedrock in the signer's region with SigV4: the payload
// hash is the SHA-256 of body, the time is now. It sets X-Amz-Date,
// Authorization and, for temporary credentials, X-Amz-Security-Token. The
// host signed is the URL's (its default port stripped) and req.Host is set
// to it, so the Host header sent equals the signed one, through an HTTPS
// proxy too (CONNECT tunnels the request unchanged).
func (s *AWSSigner) Sign(ctx context.Context, req *http.Request, body []byte) error {
	p, err := s.provider(ctx)
	if err != nil {
		return err
	}
	creds, err := p.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieving AWS credentials: %w", err)
	}
	sum := sha256.Sum256(body)

	// Sign a copy that holds only the covered headers, then carry the
	// signature's headers back.
	c := req.Clone(ctx)
	c.Host = ""
	c.Header = make(http.Header, 4)
	for k, v := range req.Header {
		if signedHeader(k) {
			c.Header[k] = append([]string(nil), v...)
		}
	}
	if err := s.signer.SignHTTP(ctx, creds, c, hex.EncodeToString(sum[:]), bedrockService, s.region, s.now()); err != nil {
		return fmt.Errorf("signing the Bedrock call: %w", err)
	}
	for _, k := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
		if v := c.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		} else {
			req.Header.Del(k)
		}
	}
	req.Host = c.Host // "" (the URL's host) or the host without its default port
	req.URL.RawQuery = c.URL.RawQuery
	return nil
}

// BedrockURL is the Converse (or ConverseStream) URL of model. base is the
// scheme and host, "" for the region's public endpoint. The model id is
// one path segment whatever it holds: the ':' of versioned ids and the '/'
// of inference-profile and provisioned-throughput ARNs are escaped, as the
// AWS SDKs escape them.
func BedrockURL(base, region, model string, stream bool) string {
	if base == "" {
		base = "https://bedrock-runtime." + region + ".amazonaws.com"
	}
	op := "/converse"
	if stream {
		op = "/converse-stream"
	}
	return strings.TrimRight(base, "/") + "/model/" + strings.ReplaceAll(url.PathEscape(model), ":", "%3A") + op
}

// Event-stream frame bounds. The SDK's decoder checks the checksums and the
// header encoding, but since aws/protocol/eventstream v1.6.9 no longer caps
// a frame's length, so the reader checks the prelude before the decoder
// allocates: at most 128 KiB of headers and 16 MiB of payload, the limits
// of the event-stream format AWS services use.
const (
	maxEventStreamHeaders = 128 << 10
	maxEventStreamPayload = 16 << 20
	eventStreamOverhead   = 16 // prelude (12 bytes with its CRC) and message CRC
)

// EventStreamReader reads an application/vnd.amazon.eventstream body frame
// by frame with the SDK's decoder. It is not safe for concurrent use.
type EventStreamReader struct {
	r   *bufio.Reader
	dec *eventstream.Decoder
	err error // sticky: a bad frame leaves the stream unreadable
}

// NewEventStreamReader reads frames from r.
func NewEventStreamReader(r io.Reader) *EventStreamReader {
	return &EventStreamReader{r: bufio.NewReader(r), dec: eventstream.NewDecoder()}
}

// Next returns the next frame's name and payload: for an event its
// :event-type; for an exception "exception:" + its :exception-type, with
// its JSON payload; for an error message "exception:" + its :error-code,
// with {"message": :error-message}. It returns io.EOF after the last whole
// frame, io.ErrUnexpectedEOF inside a frame, and another error for a frame
// that is oversized or corrupt. Each payload is a fresh slice.
func (e *EventStreamReader) Next() (name string, payload []byte, err error) {
	if e.err != nil {
		return "", nil, e.err
	}
	name, payload, err = e.next()
	if err != nil {
		e.err = err
	}
	return name, payload, err
}

func (e *EventStreamReader) next() (string, []byte, error) {
	prelude, err := e.r.Peek(8)
	switch {
	case err == io.EOF && len(prelude) == 0:
		return "", nil, io.EOF
	case errors.Is(err, io.EOF):
		return "", nil, io.ErrUnexpectedEOF
	case err != nil:
		return "", nil, err
	}
	total, headers := binary.BigEndian.Uint32(prelude), binary.BigEndian.Uint32(prelude[4:])
	if total < eventStreamOverhead || headers > total-eventStreamOverhead {
		return "", nil, fmt.Errorf("event-stream frame: bad lengths (total %d, headers %d)", total, headers)
	}
	payloadLen := total - eventStreamOverhead - headers
	if headers > maxEventStreamHeaders || payloadLen > maxEventStreamPayload {
		return "", nil, fmt.Errorf("event-stream frame too large (%d bytes of headers, %d of payload)", headers, payloadLen)
	}
	msg, err := e.dec.Decode(io.LimitReader(e.r, int64(total)), make([]byte, 0, payloadLen))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", nil, io.ErrUnexpectedEOF // the body ended inside a frame
		}
		return "", nil, fmt.Errorf("event-stream frame: %w", err)
	}
	switch kind := headerString(msg.Headers, ":message-type"); kind {
	case "event", "":
		return headerString(msg.Headers, ":event-type"), msg.Payload, nil
	case "exception":
		typ := headerString(msg.Headers, ":exception-type")
		if typ == "" {
			typ = "unknownException"
		}
		return "exception:" + typ, msg.Payload, nil
	case "error":
		code := headerString(msg.Headers, ":error-code")
		if code == "" {
			code = "unknownError"
		}
		body, _ := json.Marshal(map[string]string{"message": headerString(msg.Headers, ":error-message")})
		return "exception:" + code, body, nil
	default:
		return "", nil, fmt.Errorf("event-stream frame: unknown :message-type %q", kind)
	}
}

func headerString(h eventstream.Headers, name string) string {
	switch v := h.Get(name).(type) {
	case nil:
		return ""
	case eventstream.StringValue:
		return string(v)
	default:
		return v.String()
	}
}

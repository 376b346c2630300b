package fakes

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/tidwall/gjson"
)

// BedrockOptions pick what a fake Bedrock runtime accepts and answers.
type BedrockOptions struct {
	// The credentials a request must be signed with. SessionToken, when
	// set, must arrive as X-Amz-Security-Token (temporary credentials);
	// when empty, none may.
	AccessKeyID, SecretAccessKey, SessionToken string
	// Region the credential scope must name; default us-east-1.
	Region string
	// Reply is the assistant's text; default "1+1 equals 2.".
	Reply string
}

// BedrockFault scripts one failing answer; Fail queues them.
type BedrockFault struct {
	// Status, when set, answers with this status and Body (default
	// {"message": "scripted <ErrorType>"}) and x-amzn-ErrorType
	// ErrorType (default after the status: ThrottlingException for 429...).
	Status    int
	Body      string
	ErrorType string
	// Exception, on a converse-stream call, ends the stream with this
	// exception event (e.g. "throttlingException") after AfterWords word
	// deltas, and Message as its message.
	Exception  string
	AfterWords int
	Message    string
}

// Bedrock is a fake Amazon Bedrock runtime: POST /model/{id}/converse and
// /model/{id}/converse-stream. It verifies each request's SigV4 signature
// with the SDK's signer, checks the body as Converse does, and answers
// Converse JSON or event-stream frames made with the SDK's encoder. Token
// counts follow the fakes' tokenizer: one token per word.
type Bedrock struct {
	opts BedrockOptions
	srv  *httptest.Server

	mu       sync.Mutex
	requests []Request
	faults   []BedrockFault
	now      func() time.Time
}

// Amazon's error messages.
const (
	bedrockSigMismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	bedrockBadToken    = "The security token included in the request is invalid."
	bedrockEventStream = "application/vnd.amazon.eventstream"
)

// NewBedrock starts a fake Bedrock runtime on 127.0.0.1.
func NewBedrock(opts BedrockOptions) *Bedrock {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.Reply == "" {
		opts.Reply = "1+1 equals 2."
	}
	b := &Bedrock{opts: opts, now: time.Now}
	b.srv = httptest.NewServer(b.Handler())
	return b
}

// URL is the fake's base URL (scheme and host), for BedrockURL's base.
func (b *Bedrock) URL() string { return b.srv.URL }

// Close stops the listener.
func (b *Bedrock) Close() {
	b.srv.CloseClientConnections()
	b.srv.Close()
}

// Handler serves the fake's API, to mount behind another listener (an
// HTTPS proxy playing bedrock-runtime.<region>.amazonaws.com).
func (b *Bedrock) Handler() http.Handler { return http.HandlerFunc(b.serve) }

// Fail queues failing answers for the next requests that pass the
// signature check.
func (b *Bedrock) Fail(faults ...BedrockFault) {
	b.mu.Lock()
	b.faults = append(b.faults, faults...)
	b.mu.Unlock()
}

// Requests returns what was received, in order.
func (b *Bedrock) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// Last is the newest request.
func (b *Bedrock) Last() (Request, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		return Request{}, false
	}
	return b.requests[len(b.requests)-1], true
}

func (b *Bedrock) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	idx := len(b.requests)
	b.requests = append(b.requests, Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), Body: body,
	})
	b.mu.Unlock()
	defer func() {
		if r.Context().Err() != nil {
			b.mu.Lock()
			b.requests[idx].Canceled = true
			b.mu.Unlock()
		}
	}()

	stream, ok := bedrockRoute(r)
	if !ok {
		bedrockError(w, http.StatusNotFound, "UnknownOperationException", "Unknown operation "+r.Method+" "+r.URL.Path)
		return
	}
	if status, typ, msg := b.verify(r, body); status != 0 {
		bedrockError(w, status, typ, msg)
		return
	}
	var fault *BedrockFault
	b.mu.Lock()
	if len(b.faults) > 0 {
		fault = &b.faults[0]
		b.faults = b.faults[1:]
	}
	b.mu.Unlock()
	if fault != nil && fault.Status != 0 {
		typ := fault.ErrorType
		if typ == "" {
			typ = bedrockErrorType(fault.Status)
		}
		if fault.Body != "" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-Errortype", typ+":http://internal.amazon.com/coral/com.amazon.bedrock/")
			w.WriteHeader(fault.Status)
			io.WriteString(w, fault.Body)
			return
		}
		bedrockError(w, fault.Status, typ, "scripted "+typ)
		return
	}
	if msg := bedrockValidate(body); msg != "" {
		bedrockError(w, http.StatusBadRequest, "ValidationException", msg)
		return
	}
	in, out := bedrockPromptTokens(body), words(b.opts.Reply)
	w.Header().Set("X-Amzn-Requestid", fmt.Sprintf("fake-bedrock-%d", idx))
	if stream {
		b.stream(w, in, out, fault)
		return
	}
	writeJSON(w, http.StatusOK, obj{
		"output":     obj{"message": obj{"role": "assistant", "content": []obj{{"text": b.opts.Reply}}}},
		"stopReason": "end_turn",
		"usage":      obj{"inputTokens": in, "outputTokens": out, "totalTokens": in + out},
		"metrics":    obj{"latencyMs": 42},
	})
}

// bedrockRoute reads POST /model/{id}/converse[-stream]; the id is one
// escaped path segment.
func bedrockRoute(r *http.Request) (stream, ok bool) {
	rest, found := strings.CutPrefix(r.URL.EscapedPath(), "/model/")
	if r.Method != http.MethodPost || !found {
		return false, false
	}
	seg, op, found := strings.Cut(rest, "/")
	if !found || (op != "converse" && op != "converse-stream") {
		return false, false
	}
	if model, err := url.PathUnescape(seg); err != nil || model == "" {
		return false, false
	}
	return op == "converse-stream", true
}

// verify checks the SigV4 Authorization header as AWS does: it rebuilds
// the request from the headers the client signed, signs it again with the
// SDK at the client's X-Amz-Date with the accepted secret, and compares.
// It returns 0 for a good signature, else the status, error type and
// message AWS answers.
func (b *Bedrock) verify(r *http.Request, body []byte) (int, string, string) {
	forbidden := func(typ, msg string) (int, string, string) { return http.StatusForbidden, typ, msg }
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return forbidden("IncompleteSignatureException", "Authorization header requires the AWS4-HMAC-SHA256 algorithm.")
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	credential, signedList, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || signedList == "" || signature == "" {
		return forbidden("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return forbidden("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	if d := b.now().Sub(at); d > 15*time.Minute || d < -15*time.Minute {
		return forbidden("InvalidSignatureException", "Signature expired: "+r.Header.Get("X-Amz-Date")+" is now earlier than the allowed time window.")
	}
	keyID, date, region, service, term := scope[0], scope[1], scope[2], scope[3], scope[4]
	switch {
	case date != at.Format("20060102"):
		return forbidden("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '"+date+"' != '"+at.Format("20060102")+"'")
	case service != "bedrock":
		return forbidden("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
	case region != b.opts.Region:
		return forbidden("InvalidSignatureException", "Credential should be scoped to a valid region.")
	case term != "aws4_request":
		return forbidden("InvalidSignatureException", "Credential should be scoped with a valid terminator: 'aws4_request'.")
	case keyID != b.opts.AccessKeyID:
		return forbidden("InvalidSignatureException", bedrockSigMismatch)
	case r.Header.Get("X-Amz-Security-Token") != b.opts.SessionToken:
		return forbidden("UnrecognizedClientException", bedrockBadToken)
	}

	signed := strings.Split(signedList, ";")
	re, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return forbidden("InvalidSignatureException", bedrockSigMismatch)
	}
	re.Host = r.Host
	var hasHost bool
	for _, h := range signed {
		switch h {
		case "host":
			hasHost = true
		case "content-length":
			re.ContentLength, _ = strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
		default:
			if v := r.Header.Values(h); len(v) > 0 {
				re.Header[http.CanonicalHeaderKey(h)] = append([]string(nil), v...)
			}
		}
	}
	if !hasHost {
		return forbidden("InvalidSignatureException", "'Host' must be a signed header.")
	}
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: b.opts.SecretAccessKey}
	if containsString(signed, "x-amz-security-token") {
		creds.SessionToken = r.Header.Get("X-Amz-Security-Token")
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, re, hex.EncodeToString(sum[:]), "bedrock", region, at); err != nil {
		return forbidden("InvalidSignatureException", bedrockSigMismatch)
	}
	_, want, _ := strings.Cut(re.Header.Get("Authorization"), "Signature=")
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return forbidden("InvalidSignatureException", bedrockSigMismatch)
	}
	return 0, "", ""
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// bedrockValidate checks a Converse body as Bedrock does, with its
// messages; "" for a good body.
func bedrockValidate(body []byte) string {
	if !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return "Malformed input request, please reformat your input and try again."
	}
	msgs := gjson.GetBytes(body, "messages")
	if !msgs.IsArray() || len(msgs.Array()) == 0 {
		return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
	}
	usesTools := false
	prev := ""
	for i, m := range msgs.Array() {
		role := m.Get("role").String()
		switch {
		case role != "user" && role != "assistant":
			return fmt.Sprintf("1 validation error detected: Value '%s' at 'messages.%d.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]", role, i+1)
		case i == 0 && role != "user":
			return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
		case role == prev:
			return "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
		}
		prev = role
		content := m.Get("content")
		if !content.IsArray() || len(content.Array()) == 0 {
			return fmt.Sprintf("The content field in the Message object at messages.%d is empty. Add a ContentBlock object to the content field and try again.", i)
		}
		for j, c := range content.Array() {
			if t := c.Get("text"); t.Exists() && strings.TrimSpace(t.String()) == "" {
				return fmt.Sprintf("The text field in the ContentBlock object at messages.%d.content.%d is blank. Add text to the text field, and try again.", i, j)
			}
			if c.Get("toolUse").Exists() || c.Get("toolResult").Exists() {
				usesTools = true
			}
		}
	}
	if usesTools && !gjson.GetBytes(body, "toolConfig").Exists() {
		return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
	}
	return ""
}

// bedrockPromptTokens counts the words of the system prompt, the messages'
// text blocks and the tool results' texts.
func bedrockPromptTokens(body []byte) int {
	n := 0
	gjson.GetBytes(body, "system.#.text").ForEach(func(_, t gjson.Result) bool { n += words(t.String()); return true })
	gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
		m.Get("content").ForEach(func(_, c gjson.Result) bool {
			n += words(c.Get("text").String())
			c.Get("toolResult.content.#.text").ForEach(func(_, t gjson.Result) bool { n += words(t.String()); return true })
			return true
		})
		return true
	})
	return n
}

// stream answers ConverseStream: messageStart, a contentBlockDelta per
// word, contentBlockStop, messageStop and metadata, each a frame flushed
// on its own; or the fault's exception after its words.
func (b *Bedrock) stream(w http.ResponseWriter, in, out int, fault *BedrockFault) {
	w.Header().Set("Content-Type", bedrockEventStream)
	w.WriteHeader(http.StatusOK)
	enc := eventstream.NewEncoder()
	rc := http.NewResponseController(w)
	send := func(msg eventstream.Message) bool {
		var buf bytes.Buffer
		if err := enc.Encode(&buf, msg); err != nil {
			return false
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	event := func(name string, payload obj) bool {
		payload["p"] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"[:8+len(name)] // Bedrock pads events
		data, _ := json.Marshal(payload)
		return send(eventstream.Message{Headers: eventstream.Headers{
			{Name: ":event-type", Value: eventstream.StringValue(name)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
			{Name: ":message-type", Value: eventstream.StringValue("event")},
		}, Payload: data})
	}
	exception := func(typ, msg string) {
		data, _ := json.Marshal(obj{"message": msg})
		send(eventstream.Message{Headers: eventstream.Headers{
			{Name: ":exception-type", Value: eventstream.StringValue(typ)},
			{Name: ":content-type", Value: eventstream.StringValue("application/json")},
			{Name: ":message-type", Value: eventstream.StringValue("exception")},
		}, Payload: data})
	}

	if !event("messageStart", obj{"role": "assistant"}) {
		return
	}
	for i, word := range strings.Fields(b.opts.Reply) {
		if fault != nil && fault.Exception != "" && i == fault.AfterWords {
			exception(fault.Exception, bedrockFaultMessage(fault))
			return
		}
		if i > 0 {
			word = " " + word
		}
		if !event("contentBlockDelta", obj{"contentBlockIndex": 0, "delta": obj{"text": word}}) {
			return
		}
	}
	if fault != nil && fault.Exception != "" {
		exception(fault.Exception, bedrockFaultMessage(fault))
		return
	}
	_ = event("contentBlockStop", obj{"contentBlockIndex": 0}) &&
		event("messageStop", obj{"stopReason": "end_turn"}) &&
		event("metadata", obj{"usage": obj{"inputTokens": in, "outputTokens": out, "totalTokens": in + out}, "metrics": obj{"latencyMs": 42}})
}

func bedrockFaultMessage(f *BedrockFault) string {
	if f.Message != "" {
		return f.Message
	}
	if strings.EqualFold(f.Exception, "throttlingException") {
		return "Too many tokens, please wait before trying again."
	}
	return "scripted " + f.Exception
}

// bedrockErrorType is the exception Bedrock answers a status with.
func bedrockErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "ValidationException"
	case http.StatusForbidden:
		return "AccessDeniedException"
	case http.StatusNotFound:
		return "ResourceNotFoundException"
	case http.StatusRequestTimeout:
		return "ModelTimeoutException"
	case http.StatusFailedDependency:
		return "ModelErrorException"
	case http.StatusTooManyRequests:
		return "ThrottlingException"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailableException"
	}
	return "InternalServerException"
}

// bedrockError answers in Bedrock's error shape: {"message"} and the
// exception in x-amzn-ErrorType.
func bedrockError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("X-Amzn-Errortype", typ+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	writeJSON(w, status, obj{"message": msg})
}

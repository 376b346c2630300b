package providers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/httpsproxy"
)

const awsTestProfileARN = "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0"

// awsIsolate empties every environment variable the default credential
// chain reads and points the shared files at empty temp files, so a test
// never reads the machine's credentials nor probes the network (EC2 IMDS).
func awsIsolate(t *testing.T) (configFile, credentialsFile string) {
	t.Helper()
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL",
	} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	configFile, credentialsFile = filepath.Join(dir, "config"), filepath.Join(dir, "credentials")
	for _, f := range []string{configFile, credentialsFile} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", configFile)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credentialsFile)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return configFile, credentialsFile
}

func awsTestRequest(t *testing.T, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// Sign produces exactly what the SDK's signer produces from the same
// inputs, over the covered headers only.
func TestAWSSignerSignsLikeTheSDK(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "FwoGZXIvYXdzEXAMPLE"}
	s, err := NewAWSSigner("eu-west-3", &AWSAuth{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	s.now = func() time.Time { return at }
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"hi"}]}]}`)
	req := awsTestRequest(t, BedrockURL("", "eu-west-3", awsTestProfileARN, true), body)
	// Headers a proxy or transport may change stay out of the signature.
	req.Header.Set("User-Agent", "ai-proxy-runner")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Amzn-Bedrock-Trace", "ENABLED")
	if err := s.Sign(context.Background(), req, body); err != nil {
		t.Fatal(err)
	}

	want, _ := http.NewRequest(http.MethodPost, req.URL.String(), nil)
	want.ContentLength = int64(len(body))
	want.Header.Set("Content-Type", "application/json")
	want.Header.Set("X-Amzn-Bedrock-Trace", "ENABLED")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, want, hex.EncodeToString(sum[:]), "bedrock", "eu-west-3", at); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
		if got, w := req.Header.Get(h), want.Header.Get(h); got != w || w == "" {
			t.Errorf("%s:\ngot  %q\nwant %q", h, got, w)
		}
	}
	auth := req.Header.Get("Authorization")
	for _, part := range []string{
		"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260304/eu-west-3/bedrock/aws4_request",
		"SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token;x-amzn-bedrock-trace,",
	} {
		if !strings.Contains(auth, part) {
			t.Errorf("Authorization %q lacks %q", auth, part)
		}
	}
	if strings.Contains(auth, creds.SecretAccessKey) || req.Header.Get("X-Forwarded-For") != "10.0.0.1" {
		t.Errorf("headers: %v", req.Header)
	}

	// Signing again with long-term credentials drops the stale token.
	s2, _ := NewAWSSigner("eu-west-3", &AWSAuth{AccessKeyID: "AKIDOTHER", SecretAccessKey: "other"})
	if err := s2.Sign(context.Background(), req, body); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("X-Amz-Security-Token") != "" || !strings.Contains(req.Header.Get("Authorization"), "Credential=AKIDOTHER/") ||
		strings.Contains(req.Header.Get("Authorization"), "x-amz-security-token") {
		t.Errorf("re-signed: %v", req.Header)
	}
}

// The Host header sent is the one signed: the URL's host without its
// default port, whatever req.Host held.
func TestAWSSignerHost(t *testing.T) {
	s, _ := NewAWSSigner("us-east-1", &AWSAuth{AccessKeyID: "AKID", SecretAccessKey: "secret"})
	req := awsTestRequest(t, "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/m/converse", nil)
	req.Host = "elsewhere.example"
	if err := s.Sign(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	if req.Host != "bedrock-runtime.us-east-1.amazonaws.com" {
		t.Errorf("host %q", req.Host)
	}
}

func TestAWSSignerConfErrors(t *testing.T) {
	cases := []struct {
		auth  *AWSAuth
		field string
	}{
		{&AWSAuth{AccessKeyID: "AKIDSECRETVALUE1"}, "auth.aws.secret_access_key"},
		{&AWSAuth{SecretAccessKey: "s3cr3tVALUE"}, "auth.aws.access_key_id"},
		{&AWSAuth{SessionToken: "tokenVALUE"}, "auth.aws.access_key_id"},
	}
	for _, c := range cases {
		_, err := NewAWSSigner("us-east-1", c.auth)
		var ce *ConfError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%+v: %v", c.auth, err)
			continue
		}
		for _, v := range []string{c.auth.AccessKeyID, c.auth.SecretAccessKey, c.auth.SessionToken} {
			if v != "" && strings.Contains(err.Error(), v) {
				t.Errorf("error echoes a credential: %v", err)
			}
		}
	}
	if _, err := NewAWSSigner("", nil); err == nil {
		t.Error("no region accepted")
	}
	for _, a := range []*AWSAuth{nil, {}} {
		if s, err := NewAWSSigner("us-east-1", a); err != nil || s.creds != nil {
			t.Errorf("%v: %v (the default chain must load lazily)", a, err)
		}
	}
}

// Without static credentials the default chain is read on first use: the
// environment set after the signer was made counts.
func TestAWSSignerDefaultChainFromEnv(t *testing.T) {
	awsIsolate(t)
	s, err := NewAWSSigner("us-west-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "env-token")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req := awsTestRequest(t, BedrockURL("", "us-west-2", "amazon.nova-lite-v1:0", false), []byte(`{}`))
			if err := s.Sign(context.Background(), req, []byte(`{}`)); err != nil {
				t.Error(err)
				return
			}
			if !strings.Contains(req.Header.Get("Authorization"), "Credential=AKIDFROMENV/") || req.Header.Get("X-Amz-Security-Token") != "env-token" {
				t.Errorf("headers %v", req.Header)
			}
		})
	}
	wg.Wait()
}

func TestAWSSignerDefaultChainFromSharedFiles(t *testing.T) {
	configFile, credentialsFile := awsIsolate(t)
	os.WriteFile(credentialsFile, []byte("[team]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret\n"), 0o600)
	os.WriteFile(configFile, []byte("[profile team]\nregion = eu-central-1\n"), 0o600)
	t.Setenv("AWS_PROFILE", "team")
	s, _ := NewAWSSigner("us-east-1", nil)
	req := awsTestRequest(t, BedrockURL("", "us-east-1", "m", false), nil)
	if err := s.Sign(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	// The signing region is the route's, not the profile's.
	if a := req.Header.Get("Authorization"); !strings.Contains(a, "Credential=AKIDFROMFILE/") || !strings.Contains(a, "/us-east-1/bedrock/") {
		t.Errorf("Authorization %q", a)
	}
}

// No credentials anywhere: Sign fails at once (IMDS disabled), and says
// why.
func TestAWSSignerNoCredentials(t *testing.T) {
	awsIsolate(t)
	s, _ := NewAWSSigner("us-east-1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := s.Sign(ctx, awsTestRequest(t, BedrockURL("", "us-east-1", "m", false), nil), nil)
	if err == nil || !strings.Contains(err.Error(), "AWS credentials") {
		t.Fatalf("got %v", err)
	}
}

func TestBedrockURL(t *testing.T) {
	cases := []struct {
		base, model string
		stream      bool
		want        string
	}{
		{"", "anthropic.claude-3-5-haiku-20241022-v1:0", false, "https://bedrock-runtime.eu-west-3.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"},
		{"", awsTestProfileARN, true, "https://bedrock-runtime.eu-west-3.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile%2Feu.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"},
		{"https://vpce-1.bedrock-runtime.eu-west-3.vpce.amazonaws.com/", "m", true, "https://vpce-1.bedrock-runtime.eu-west-3.vpce.amazonaws.com/model/m/converse-stream"},
	}
	for _, c := range cases {
		got := BedrockURL(c.base, "eu-west-3", c.model, c.stream)
		if got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		// The model stays one segment and reads back unchanged.
		segs := strings.Split(u.EscapedPath(), "/")
		if m, _ := url.PathUnescape(segs[2]); len(segs) != 4 || m != c.model {
			t.Errorf("%s: segments %q", got, segs)
		}
	}
}

func esFrames(t *testing.T, msgs ...eventstream.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := eventstream.NewEncoder()
	for _, m := range msgs {
		if err := enc.Encode(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func esFrame(kind, nameHeader, name, payload string, extra ...eventstream.Header) eventstream.Message {
	h := eventstream.Headers{
		{Name: ":message-type", Value: eventstream.StringValue(kind)},
		{Name: nameHeader, Value: eventstream.StringValue(name)},
		{Name: ":content-type", Value: eventstream.StringValue("application/json")},
	}
	return eventstream.Message{Headers: append(h, extra...), Payload: []byte(payload)}
}

func TestEventStreamReader(t *testing.T) {
	data := esFrames(t,
		esFrame("event", ":event-type", "messageStart", `{"role":"assistant"}`),
		esFrame("event", ":event-type", "contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"hi"}}`),
		esFrame("exception", ":exception-type", "throttlingException", `{"message":"Too many tokens"}`),
		esFrame("error", ":error-code", "InternalFailure", ``, eventstream.Header{Name: ":error-message", Value: eventstream.StringValue(`boom "quoted"`)}),
		eventstream.Message{Headers: eventstream.Headers{{Name: ":event-type", Value: eventstream.StringValue("noMessageType")}}},
	)
	r := NewEventStreamReader(esOneByte(data))
	want := []struct{ name, payload string }{
		{"messageStart", `{"role":"assistant"}`},
		{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"hi"}}`},
		{"exception:throttlingException", `{"message":"Too many tokens"}`},
		{"exception:InternalFailure", `{"message":"boom \"quoted\""}`},
		{"noMessageType", ``},
	}
	for i, w := range want {
		name, payload, err := r.Next()
		if err != nil || name != w.name || string(payload) != w.payload {
			t.Fatalf("esFrame %d: %q %q %v", i, name, payload, err)
		}
	}
	for range 2 { // io.EOF stays
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	}
}

// esOneByte reads one byte at a time: frames split across reads.
func esOneByte(b []byte) io.Reader { return &esOneByteReader{b} }

type esOneByteReader struct{ b []byte }

func (o *esOneByteReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], o.b = o.b[0], o.b[1:]
	return 1, nil
}

func TestEventStreamReaderBadFrames(t *testing.T) {
	good := esFrames(t, esFrame("event", ":event-type", "metadata", `{"usage":{}}`))
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-6] ^= 0xff                          // a payload byte: the message CRC fails
	huge := []byte{0x10, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0} // 256 MiB declared
	cases := []struct {
		name string
		data []byte
		want func(error) bool
	}{
		{"truncated", good[:len(good)-3], func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"short prelude", good[:5], func(err error) bool { return err == io.ErrUnexpectedEOF }},
		{"checksum", corrupt, func(err error) bool { return err != nil && err != io.EOF }},
		{"oversized", huge, func(err error) bool { return err != nil && strings.Contains(err.Error(), "too large") }},
		{"headers beyond frame", []byte{0, 0, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "bad lengths") }},
		{"unknown message type", esFrames(t, esFrame("party", ":event-type", "x", `{}`)), func(err error) bool { return err != nil && strings.Contains(err.Error(), "party") }},
	}
	for _, c := range cases {
		r := NewEventStreamReader(bytes.NewReader(c.data))
		_, _, err := r.Next()
		if !c.want(err) {
			t.Errorf("%s: %v", c.name, err)
		}
		if _, _, err2 := r.Next(); err2 != err { // sticky
			t.Errorf("%s: then %v", c.name, err2)
		}
	}
}

// A signed call reaches the fake Bedrock at its public host through an
// HTTPS proxy (CONNECT, TLS terminated by the proxy's CA), passes its
// SigV4 check, and its stream decodes into hub deltas.
func TestBedrockThroughHTTPSProxy(t *testing.T) {
	fake := fakes.NewBedrock(fakes.BedrockOptions{AccessKeyID: "AKIDPROXY", SecretAccessKey: "proxy-secret", SessionToken: "proxy-token", Region: "us-east-1"})
	defer fake.Close()
	proxy, err := httpsproxy.Start(fake.Handler())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := proxy.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	proxyURL, _ := url.Parse(proxy.URL())
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	s, err := NewAWSSigner("us-east-1", &AWSAuth{AccessKeyID: "AKIDPROXY", SecretAccessKey: "proxy-secret", SessionToken: "proxy-token"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := protocols.BedrockConverse.EncodeRequest(&protocols.Request{Messages: []protocols.Message{
		{Role: protocols.RoleUser, Parts: []protocols.Part{{Kind: protocols.PartText, Text: "what is one plus one"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	req := awsTestRequest(t, BedrockURL("", "us-east-1", "us.anthropic.claude-3-7-sonnet-20250219-v1:0", true), body)
	if err := s.Sign(context.Background(), req, body); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	dec := protocols.BedrockConverse.NewDecoder()
	var ds []protocols.Delta
	r := NewEventStreamReader(resp.Body)
	for done := false; !done; {
		name, payload, err := r.Next()
		if err != nil {
			t.Fatalf("before the end: %v", err)
		}
		if ds, done, err = dec.Event(ds, name, payload); err != nil {
			t.Fatal(err)
		}
	}
	var text strings.Builder
	var usage *protocols.Usage
	for _, d := range ds {
		text.WriteString(d.Text)
		if d.Usage != nil {
			usage = d.Usage
		}
	}
	if text.String() != "1+1 equals 2." || usage == nil || usage.Input != 5 || usage.Output != 3 {
		t.Errorf("text %q usage %+v", text.String(), usage)
	}
	got, _ := fake.Last()
	if got.Host != "bedrock-runtime.us-east-1.amazonaws.com" || got.Path != "/model/us.anthropic.claude-3-7-sonnet-20250219-v1:0/converse-stream" {
		t.Errorf("fake saw host %q path %q", got.Host, got.Path)
	}
	if c := proxy.Connects(); len(c) != 1 || c[0] != "bedrock-runtime.us-east-1.amazonaws.com:443" {
		t.Errorf("connects %v", c)
	}

	// A wrong secret is refused as AWS refuses it.
	bad, _ := NewAWSSigner("us-east-1", &AWSAuth{AccessKeyID: "AKIDPROXY", SecretAccessKey: "wrong", SessionToken: "proxy-token"})
	req = awsTestRequest(t, BedrockURL("", "us-east-1", "m", false), body)
	if err := bad.Sign(context.Background(), req, body); err != nil {
		t.Fatal(err)
	}
	resp2, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 403 || !strings.Contains(protocols.BedrockConverse.ErrorMessage(b), "signature we calculated does not match") {
		t.Errorf("wrong secret: %d %s", resp2.StatusCode, b)
	}
}

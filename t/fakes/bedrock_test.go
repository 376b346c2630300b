package fakes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

var bedrockTestCreds = aws.Credentials{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token"}

// bedrockCall signs a Converse call with the SDK as a client would (the
// model escaped into one path segment) and sends it.
func bedrockCall(t *testing.T, b *Bedrock, creds aws.Credentials, region, model string, stream bool, body string, at time.Time) *http.Response {
	t.Helper()
	op := "converse"
	if stream {
		op = "converse-stream"
	}
	u := b.URL() + "/model/" + strings.ReplaceAll(url.PathEscape(model), ":", "%3A") + "/" + op
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "bedrock", region, at); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

const bedrockTestBody = `{"system":[{"text":"Be brief."}],"messages":[{"role":"user","content":[{"text":"What is one plus one?"}]}]}`

func TestBedrockConverse(t *testing.T) {
	b := NewBedrock(BedrockOptions{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token", Region: "eu-west-3"})
	defer b.Close()
	resp := bedrockCall(t, b, bedrockTestCreds, "eu-west-3", "anthropic.claude-3-5-haiku-20241022-v1:0", false, bedrockTestBody, time.Now())
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var got struct {
		Output struct {
			Message struct {
				Role    string
				Content []struct{ Text string }
			}
		}
		StopReason string
		Usage      struct{ InputTokens, OutputTokens, TotalTokens int }
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	// 2 system words + 5 prompt words; "1+1 equals 2." is 3 words.
	if got.Output.Message.Content[0].Text != "1+1 equals 2." || got.StopReason != "end_turn" || got.Usage.InputTokens != 7 || got.Usage.OutputTokens != 3 || got.Usage.TotalTokens != 10 {
		t.Errorf("answer %s", raw)
	}
	last, _ := b.Last()
	if last.Path != "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse" || string(last.Body) != bedrockTestBody || last.Header.Get("X-Amz-Security-Token") != "fake-token" {
		t.Errorf("recorded %+v", last)
	}
}

// bedrockFrames reads an event-stream body with the SDK's decoder.
func bedrockFrames(t *testing.T, r io.Reader) []eventstream.Message {
	t.Helper()
	dec := eventstream.NewDecoder()
	var out []eventstream.Message
	for {
		m, err := dec.Decode(r, nil)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func bedrockHeader(m eventstream.Message, name string) string {
	if v := m.Headers.Get(name); v != nil {
		return v.String()
	}
	return ""
}

func TestBedrockConverseStream(t *testing.T) {
	b := NewBedrock(BedrockOptions{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token", Reply: "one two three"})
	defer b.Close()
	// An inference-profile ARN: '/' and ':' escaped in one segment.
	model := "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0"
	resp := bedrockCall(t, b, bedrockTestCreds, "us-east-1", model, true, bedrockTestBody, time.Now())
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var names, text []string
	var last []byte
	for _, m := range bedrockFrames(t, resp.Body) {
		if bedrockHeader(m, ":message-type") != "event" || bedrockHeader(m, ":content-type") != "application/json" {
			t.Errorf("headers %v", m.Headers)
		}
		name := bedrockHeader(m, ":event-type")
		names = append(names, name)
		if name == "contentBlockDelta" {
			var d struct{ Delta struct{ Text string } }
			json.Unmarshal(m.Payload, &d)
			text = append(text, d.Delta.Text)
		}
		last = m.Payload
	}
	want := "messageStart contentBlockDelta contentBlockDelta contentBlockDelta contentBlockStop messageStop metadata"
	if strings.Join(names, " ") != want || strings.Join(text, "") != "one two three" {
		t.Errorf("events %v text %q", names, text)
	}
	if !bytes.Contains(last, []byte(`"usage":{"inputTokens":7,"outputTokens":3,"totalTokens":10}`)) {
		t.Errorf("metadata %s", last)
	}
}

// Bad signatures get AWS's 403s; the fake checks the signature itself,
// not just the key id.
func TestBedrockSigV4Refusals(t *testing.T) {
	b := NewBedrock(BedrockOptions{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token"})
	defer b.Close()
	now := time.Now()
	wrongSecret, wrongKey, noToken, wrongToken := bedrockTestCreds, bedrockTestCreds, bedrockTestCreds, bedrockTestCreds
	wrongSecret.SecretAccessKey = "guess"
	wrongKey.AccessKeyID = "AKIDOTHER"
	noToken.SessionToken = ""
	wrongToken.SessionToken = "stolen"
	cases := []struct {
		name   string
		creds  aws.Credentials
		region string
		at     time.Time
		want   string // in the message
	}{
		{"wrong secret", wrongSecret, "us-east-1", now, "signature we calculated does not match"},
		{"unknown key", wrongKey, "us-east-1", now, "signature we calculated does not match"},
		{"missing token", noToken, "us-east-1", now, "security token included in the request is invalid"},
		{"wrong token", wrongToken, "us-east-1", now, "security token included in the request is invalid"},
		{"wrong region", bedrockTestCreds, "us-west-2", now, "scoped to a valid region"},
		{"stale", bedrockTestCreds, "us-east-1", now.Add(-20 * time.Minute), "Signature expired"},
	}
	for _, c := range cases {
		resp := bedrockCall(t, b, c.creds, c.region, "m", false, bedrockTestBody, c.at)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || !strings.Contains(string(raw), c.want) || resp.Header.Get("X-Amzn-ErrorType") == "" {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, raw)
		}
	}

	// A body changed after signing, a signed header changed, a missing
	// Authorization, another service.
	sign := func(service string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, b.URL()+"/model/m/converse", strings.NewReader(bedrockTestBody))
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256([]byte(bedrockTestBody))
		v4.NewSigner().SignHTTP(context.Background(), bedrockTestCreds, req, hex.EncodeToString(sum[:]), service, "us-east-1", now)
		return req
	}
	tampered := sign("bedrock")
	tampered.Body = io.NopCloser(strings.NewReader(strings.Replace(bedrockTestBody, "one", "two", 1)))
	header := sign("bedrock")
	header.Header.Set("Content-Type", "text/plain")
	unsigned := sign("bedrock")
	unsigned.Header.Del("Authorization")
	for name, req := range map[string]*http.Request{"tampered body": tampered, "tampered header": header, "unsigned": unsigned, "other service": sign("s3")} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, raw)
		}
	}
	if n := len(b.Requests()); n != len(cases)+4 {
		t.Errorf("recorded %d requests", n)
	}
}

func TestBedrockValidation(t *testing.T) {
	b := NewBedrock(BedrockOptions{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token"})
	defer b.Close()
	for body, want := range map[string]string{
		`{"messages":`: "Malformed input request",
		`{"messages":[{"role":"assistant","content":[{"text":"hi"}]}]}`:                                    "must start with a user message",
		`{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"user","content":[{"text":"b"}]}]}`: "must alternate",
		`{"messages":[{"role":"user","content":[{"text":"  "}]}]}`:                                         "is blank",
		`{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"t","content":[]}}]}]}`:         "toolConfig field must be defined",
	} {
		resp := bedrockCall(t, b, bedrockTestCreds, "us-east-1", "m", false, body, time.Now())
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !strings.Contains(string(raw), want) || !strings.HasPrefix(resp.Header.Get("X-Amzn-ErrorType"), "ValidationException") {
			t.Errorf("%s: %d %s", body, resp.StatusCode, raw)
		}
	}
}

func TestBedrockScriptedFaults(t *testing.T) {
	b := NewBedrock(BedrockOptions{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret", SessionToken: "fake-token"})
	defer b.Close()
	b.Fail(
		BedrockFault{Status: 429},
		BedrockFault{Status: 503, Body: `{"message":"Bedrock is unable to process your request."}`},
		BedrockFault{Exception: "throttlingException", AfterWords: 1},
	)
	resp := bedrockCall(t, b, bedrockTestCreds, "us-east-1", "m", false, bedrockTestBody, time.Now())
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || !strings.HasPrefix(resp.Header.Get("X-Amzn-ErrorType"), "ThrottlingException") || !strings.Contains(string(raw), `"message"`) {
		t.Errorf("429: %d %s %v", resp.StatusCode, raw, resp.Header)
	}
	resp = bedrockCall(t, b, bedrockTestCreds, "us-east-1", "m", false, bedrockTestBody, time.Now())
	raw, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || string(raw) != `{"message":"Bedrock is unable to process your request."}` {
		t.Errorf("503: %d %s", resp.StatusCode, raw)
	}
	resp = bedrockCall(t, b, bedrockTestCreds, "us-east-1", "m", true, bedrockTestBody, time.Now())
	frames := bedrockFrames(t, resp.Body)
	var kinds []string
	for _, m := range frames {
		kinds = append(kinds, bedrockHeader(m, ":message-type")+":"+bedrockHeader(m, ":event-type")+bedrockHeader(m, ":exception-type"))
	}
	if resp.StatusCode != 200 || strings.Join(kinds, " ") != "event:messageStart event:contentBlockDelta exception:throttlingException" ||
		!bytes.Contains(frames[len(frames)-1].Payload, []byte("Too many tokens")) {
		t.Errorf("mid-stream: %d %v", resp.StatusCode, kinds)
	}
	// The faults are spent: the next call succeeds.
	if resp := bedrockCall(t, b, bedrockTestCreds, "us-east-1", "m", false, bedrockTestBody, time.Now()); resp.StatusCode != 200 {
		t.Errorf("after faults: %d", resp.StatusCode)
	}
}

package realapisix_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// Protocol translation on real APISIX, with the routes of conf/routes:
// an OpenAI chat client reaches Anthropic, an Anthropic client reaches
// OpenAI (told by its anthropic-version header on a path of the route's
// own) and Bedrock, a Responses client reaches Gemini's generateContent.
// nginx's access log names both protocols and the tokens, and a translated
// stream reaches the client event by event.
func TestTranslationOnRealAPISIX(t *testing.T) {
	l := newLane(t)
	l.resetRoutes(t)
	for _, r := range []string{"openai", "anthropic", "bedrock", "gemini-native"} {
		l.putRoute(t, r)
	}

	cells := []struct {
		name, path, body     string
		hdr                  []string
		client, provider     string
		text                 string // gjson path of the answer's text
		promptTokens         string // gjson path of the prompt tokens the client is told
		providerPathContains string
	}{
		{"chat→anthropic", "/anthropic/v1/chat/completions", `{"messages":[{"role":"user","content":"What is 1+1?"}]}`, nil,
			"openai-chat", "anthropic-messages", "choices.0.message.content", "usage.prompt_tokens", "/v1/messages"},
		{"messages→openai", "/anything", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"What is 1+1?"}]}`, []string{"anthropic-version", "2023-06-01"},
			"anthropic-messages", "openai-chat", "content.0.text", "usage.input_tokens", "/v1/chat/completions"},
		{"messages→bedrock", "/bedrock/v1/messages", `{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"What is 1+1?"}]}`, []string{"anthropic-version", "2023-06-01"},
			"anthropic-messages", "bedrock-converse", "content.0.text", "usage.input_tokens", "/converse"},
		{"responses→gemini", "/gemini/v1/responses", `{"model":"m","input":"What is 1+1?"}`, nil,
			"openai-responses", "gemini-generate-content", `output.#(type=="message").content.0.text`, "usage.input_tokens", ":generateContent"},
	}
	for _, c := range cells {
		t.Run(c.name, func(t *testing.T) {
			resp, body := l.post(t, c.path, c.body, c.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if !strings.Contains(gjson.Get(body, c.text).String(), "2") {
				t.Errorf("answer %s", body)
			}
			acc := l.accessEntry(t, "llm_call_id", resp.Header.Get("X-LLM-Call-Id"))
			if acc["llm_client_protocol"] != c.client || acc["llm_provider_protocol"] != c.provider {
				t.Errorf("access log protocols: %v", acc)
			}
			if acc["llm_prompt_tokens"] == "" || acc["llm_prompt_tokens"] == "0" || acc["llm_cached_tokens"] == "" {
				t.Errorf("access log tokens: %v", acc)
			}
			if got := gjson.Get(body, c.promptTokens).String(); got != acc["llm_prompt_tokens"] {
				t.Errorf("client told %s prompt tokens, access log %s", got, acc["llm_prompt_tokens"])
			}
		})
	}
	if r, ok := l.bedrock.Last(); !ok || !strings.HasSuffix(r.Path, "/converse") || r.Header.Get("Authorization") == "" {
		t.Errorf("bedrock got %v", r)
	}
	if r, ok := l.geminiNative.Last(); !ok || r.Header.Get("X-Goog-Api-Key") != geminiKey {
		t.Errorf("gemini got %v", r)
	}

	// A chat client's stream from Anthropic: the provider holds its third
	// event until the client has read the translation of the first text.
	gate := make(chan struct{})
	l.fakes[seeds.AnthropicHost].Script(fakes.Reply{Events: []string{
		`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}`,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}`,
		`{"type":"content_block_stop","index":0}`,
		`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}`,
		`{"type":"message_stop"}`,
	}, Gates: map[int]<-chan struct{}{3: gate}})
	req, _ := http.NewRequest("POST", l.DataURL+"/anthropic/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var text strings.Builder
	var usage gjson.Result
	opened := false
	deadline := time.AfterFunc(20*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		text.WriteString(gjson.Get(data, "choices.0.delta.content").String())
		if u := gjson.Get(data, "usage"); u.IsObject() {
			usage = u
		}
		if !opened && text.String() == "Hello" {
			close(gate) // the first token came through before the rest was sent
			opened = true
		}
	}
	if !opened || text.String() != "Hello world" {
		t.Fatalf("streamed %q (first token alone: %t)", text.String(), opened)
	}
	if usage.Get("prompt_tokens").Int() != 5 || usage.Get("completion_tokens").Int() != 2 {
		t.Errorf("stream usage %s: Anthropic's split usage must add up to input 5, output 2", usage.Raw)
	}
	l.checkNoSecrets(t)
}

package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// The official SDKs against the gateway, each reaching a provider of
// another protocol: every answer and every stream must parse without
// error, tool calls included. The client's own key never reaches a
// provider (the route's does).
func TestSDKsThroughTranslation(t *testing.T) {
	e := newEnv(t)
	e.protoRoutes(t)
	ctx := context.Background()

	weather := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("The weather in a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	})

	t.Run("openai-go chat to anthropic", func(t *testing.T) {
		c := openai.NewClient(option.WithBaseURL(e.data.URL+"/anthropic/v1/"), option.WithAPIKey("sk-client-key"), option.WithMaxRetries(0))
		params := openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("What is 1+1?")},
		}
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(resp.Choices[0].Message.Content, "2") || resp.Usage.PromptTokens <= 0 || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("answer %+v", resp)
		}
		if k := e.fakes[seeds.AnthropicHost].Requests(); len(k) == 0 || k[len(k)-1].Header.Get("Authorization") != "" {
			t.Errorf("the client's Authorization reached Anthropic")
		}

		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(acc.Choices[0].Message.Content, "2") || acc.Usage.CompletionTokens <= 0 {
			t.Errorf("stream accumulated %+v", acc.ChatCompletion)
		}

		// A tool call, whole and streamed.
		params = openai.ChatCompletionNewParams{
			Model:    "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
			Tools:    []openai.ChatCompletionToolUnionParam{weather},
		}
		resp, err = c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if tc := resp.Choices[0].Message.ToolCalls; len(tc) != 1 || tc[0].Function.Name != "get_weather" || !strings.Contains(tc[0].Function.Arguments, "Paris") || resp.Choices[0].FinishReason != "tool_calls" {
			t.Errorf("tool call answer %+v", resp.Choices[0])
		}
		sent := e.fakes[seeds.AnthropicHost].Requests()
		if body := string(sent[len(sent)-1].Body); !strings.Contains(body, `"input_schema"`) || !strings.Contains(body, `"get_weather"`) {
			t.Errorf("anthropic got tools %s", body)
		}
		stream = c.Chat.Completions.NewStreaming(ctx, params)
		acc = openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if tc := acc.Choices[0].Message.ToolCalls; len(tc) != 1 || tc[0].Function.Name != "get_weather" || !strings.Contains(tc[0].Function.Arguments, "Paris") {
			t.Errorf("streamed tool call %+v", acc.Choices[0].Message)
		}
	})

	t.Run("anthropic-sdk-go to openai", func(t *testing.T) {
		c := anthropic.NewClient(aoption.WithBaseURL(e.data.URL+"/openai/"), aoption.WithAPIKey("sk-ant-client"), aoption.WithMaxRetries(0))
		params := anthropic.MessageNewParams{
			Model:     "claude-sonnet-4-5",
			MaxTokens: 64,
			System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is 1+1?"))},
		}
		msg, err := c.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) == 0 || !strings.Contains(msg.Content[0].Text, "2") || msg.Usage.InputTokens <= 0 || msg.StopReason != "end_turn" {
			t.Errorf("message %+v", msg)
		}
		got := e.lastRequest(t, openAIHost)
		if got.Path != "/v1/chat/completions" || got.Header.Get("Anthropic-Version") != "" || got.Header.Get("X-Api-Key") != "" {
			t.Errorf("openai got %s with headers %v", got.Path, got.Header)
		}
		stream := c.Messages.NewStreaming(ctx, params)
		var acc anthropic.Message
		for stream.Next() {
			if err := acc.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Content) == 0 || !strings.Contains(acc.Content[0].Text, "2") || acc.Usage.OutputTokens <= 0 || acc.Usage.InputTokens <= 0 {
			t.Errorf("accumulated %+v", acc)
		}
	})

	t.Run("openai-go responses to bedrock", func(t *testing.T) {
		c := openai.NewClient(option.WithBaseURL(e.data.URL+"/bedrock/v1/"), option.WithAPIKey("sk-client-key"), option.WithMaxRetries(0))
		params := responses.ResponseNewParams{
			Model:        "gpt-4o",
			Instructions: openai.String("Be brief."),
			Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("What is 1+1?")},
		}
		resp, err := c.Responses.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(resp.OutputText(), "2") || resp.Usage.InputTokens <= 0 {
			t.Errorf("response %+v", resp)
		}
		stream := c.Responses.NewStreaming(ctx, params)
		var text strings.Builder
		var completed bool
		for stream.Next() {
			ev := stream.Current()
			switch ev.Type {
			case "response.output_text.delta":
				text.WriteString(ev.Delta)
			case "response.completed":
				completed = ev.Response.Usage.OutputTokens > 0
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text.String(), "2") || !completed {
			t.Errorf("streamed %q, completed with usage %t", text.String(), completed)
		}
	})
}

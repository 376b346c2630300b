package providers

import "github.com/ai-proxy-runner/ai-proxy-runner/providers/protocols"

// ClientOf is the codec that reads requests of protocol p and writes
// answers in it, nil when the gateway cannot translate from p.
func ClientOf(p protocols.Protocol) protocols.Client {
	switch p {
	case protocols.ChatCompletions:
		return protocols.OpenAIChat
	case protocols.Messages:
		return protocols.Anthropic
	case protocols.Responses:
		return protocols.OpenAIResponses
	}
	return nil
}

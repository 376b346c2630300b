package aiproxy

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// Response headers for APISIX's access log, read there as
// $upstream_http_x_llm_*.
const (
	HeaderProvider         = "X-LLM-Provider"
	HeaderModel            = "X-LLM-Model"
	HeaderRequestModel     = "X-LLM-Request-Model"
	HeaderTTFT             = "X-LLM-Time-To-First-Token"
	HeaderPromptTokens     = "X-LLM-Prompt-Tokens"
	HeaderCompletionTokens = "X-LLM-Completion-Tokens"
	HeaderTotalTokens      = "X-LLM-Total-Tokens"
	HeaderCachedTokens     = "X-LLM-Cached-Tokens"
	HeaderReasoningTokens  = "X-LLM-Reasoning-Tokens"
	// The client's wire protocol and the provider's (they differ when the
	// relay translated the call).
	HeaderClientProtocol   = "X-LLM-Client-Protocol"
	HeaderProviderProtocol = "X-LLM-Provider-Protocol"
	// ai-proxy-multi: the instance that answered, how many instances the
	// call tried, and why it last moved on.
	HeaderInstance = "X-LLM-Instance"
	// HeaderCost is a whole answer's price by the route's ai-rate-limiting
	// prices, in their currency.
	HeaderCost           = "X-LLM-Cost"
	HeaderAttempts       = "X-LLM-Attempts"
	HeaderFallbackReason = "X-LLM-Fallback-Reason"
	// HeaderCallID joins an access-log line to the runner's call-log line:
	// stock APISIX has no route or request id that both can see.
	HeaderCallID = "X-LLM-Call-Id"
)

// hopByHop are connection-level headers (RFC 9110 §7.6.1) that a proxy
// never forwards.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// notForwarded are client request headers the provider must not see: the
// ticket; credentials, which the route's auth replaces rather than merges
// with; headers that choose who is billed under the gateway's key (a route
// that wants them sets them in auth.header); cookies and forwarding
// headers, which belong to the gateway's own site and clients;
// Accept-Encoding, because the relay reads answers.
var notForwarded = []string{
	TicketHeader, HashHeader, "Host", "Content-Length", "Accept-Encoding",
	"Authorization", "Api-Key", "X-Api-Key", "X-Goog-Api-Key", "Cookie",
	"Openai-Organization", "Openai-Project", "X-Goog-User-Project",
	"Anthropic-Organization",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Real-Ip",
	// APISIX names the authenticated consumer to its upstream, the relay;
	// who the gateway's users are is not the provider's business.
	"X-Consumer-Username", "X-Credential-Identifier", "X-Consumer-Custom-Id",
}

// notReturned are provider response headers the relay sets itself or that
// must not reach the client of another site.
var notReturned = []string{"Content-Length", "Set-Cookie", "X-Accel-Buffering"}

func dropSet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, h := range l {
			m[textproto.CanonicalMIMEHeaderKey(h)] = true
		}
	}
	return m
}

// llmHeaderPrefix is the canonical form of X-LLM-*. In a drop set it drops
// every header so named: a provider must not fill the access log's fields.
const llmHeaderPrefix = "X-Llm-"

var (
	dropRequest  = dropSet(hopByHop, notForwarded)
	dropResponse = dropSet(hopByHop, notReturned, []string{llmHeaderPrefix})
)

// copyHeaders copies src into dst except the dropped names and any header
// src's Connection header names as hop-by-hop.
func copyHeaders(dst, src http.Header, drop map[string]bool) {
	var connOpts map[string]bool
	for _, v := range src["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				if connOpts == nil {
					connOpts = map[string]bool{}
				}
				connOpts[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	for k, v := range src {
		if drop[k] || connOpts[k] {
			continue
		}
		if drop[llmHeaderPrefix] && strings.HasPrefix(k, llmHeaderPrefix) {
			continue // only the relay says what the access log records
		}
		dst[k] = append([]string(nil), v...)
	}
}

// setLLMHeaders writes what the access log records about a call. Token
// counts go out only for answers read whole before the headers.
func setLLMHeaders(h http.Header, c *call, withUsage bool) {
	h.Set(HeaderCallID, c.id)
	h.Set(HeaderProvider, c.provider)
	setInstanceHeaders(h, c)
	setQuotaHeaders(h, c.limits, c.quotas)
	if c.requestModel != "" {
		h.Set(HeaderRequestModel, c.requestModel)
	}
	if m := c.model(); m != "" {
		h.Set(HeaderModel, m)
	}
	if c.ttft > 0 {
		h.Set(HeaderTTFT, strconv.FormatInt(c.ttft.Milliseconds(), 10))
	}
	h.Set(HeaderClientProtocol, string(c.proto))
	h.Set(HeaderProviderProtocol, string(c.providerProtocol()))
	if withUsage && c.obs.UsageSeen {
		h.Set(HeaderPromptTokens, strconv.FormatInt(c.obs.Usage.Prompt, 10))
		h.Set(HeaderCompletionTokens, strconv.FormatInt(c.obs.Usage.Completion, 10))
		h.Set(HeaderTotalTokens, strconv.FormatInt(c.obs.Usage.Total, 10))
		h.Set(HeaderCachedTokens, strconv.FormatInt(c.obs.Usage.Cached, 10))
		h.Set(HeaderReasoningTokens, strconv.FormatInt(c.obs.Usage.Reasoning, 10))
		if c.limits != nil && c.limits.Prices != nil {
			c.cost = c.limits.price(c)
			h.Set(HeaderCost, formatCost(c.cost))
		}
	}
}

func setInstanceHeaders(h http.Header, c *call) {
	if c.inst == nil || c.inst.Name == "" {
		return
	}
	h.Set(HeaderInstance, c.inst.Name)
	h.Set(HeaderAttempts, strconv.Itoa(c.tries))
	if c.fallbackReason != "" {
		h.Set(HeaderFallbackReason, c.fallbackReason)
	}
}

// formatCost writes millionths of a currency unit as a decimal.
func formatCost(micros int64) string {
	return strconv.FormatFloat(float64(micros)/1e6, 'f', 6, 64)
}

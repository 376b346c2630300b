package aiproxy

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLoggedPayload bounds a body written to the call log with
// logging.payloads on.
const maxLoggedPayload = 16 << 10

// logCall writes the one line per relayed call. It names the upstream host,
// never the URL (auth.query keys) or a header (credentials).
func (p *Plugin) logCall(r *http.Request, c *call) {
	if c.cost < 0 && c.limits != nil && c.limits.Prices != nil && c.obs.UsageSeen {
		c.cost = c.limits.price(c)
	}
	p.metrics.observe(c)
	if c.conf != nil && !c.conf.LogSummaries {
		return
	}
	ce := p.calls.Check(zap.InfoLevel, "llm call")
	if ce == nil {
		return
	}
	fields := []zapcore.Field{
		zap.String("call_id", c.id),
		zap.String("request_id", r.Header.Get("X-Request-Id")),
		zap.String("route_id", c.routeID()),
		zap.String("client_ip", clientIP(r)),
		zap.String("provider", c.provider),
		zap.String("api", string(c.api)),
		zap.String("client_protocol", string(c.proto)),
		zap.String("provider_protocol", string(c.providerProtocol())),
		zap.String("upstream_host", c.upstreamHost),
		zap.String("request_model", c.requestModel),
		zap.String("model", c.obs.Model),
		zap.Bool("stream", c.stream),
		zap.Int("status", c.status),
		zap.Int64("ttft_ms", c.ttft.Milliseconds()),
		zap.Int64("duration_ms", time.Since(c.start).Milliseconds()),
		zap.Int64("bytes_in", c.bytesIn),
		zap.Int64("bytes_out", c.bytesOut),
	}
	if c.obs.UsageSeen {
		u := c.obs.Usage
		fields = append(fields,
			zap.Int64("prompt_tokens", u.Prompt),
			zap.Int64("completion_tokens", u.Completion),
			zap.Int64("total_tokens", u.Total),
			zap.Int64("cached_tokens", u.Cached),
			zap.Int64("reasoning_tokens", u.Reasoning))
	}
	if c.cost >= 0 {
		fields = append(fields, zap.String("cost", formatCost(c.cost)))
	}
	if c.inst != nil && c.inst.Name != "" {
		fields = append(fields, zap.String("instance", c.inst.Name), zap.Array("attempts", attemptsField(c.attempts)))
	}
	if c.stream && c.status/100 == 2 {
		fields = append(fields, zap.Bool("stream_done", c.sawDone))
	}
	if c.errKind != "" {
		fields = append(fields, zap.String("error_kind", c.errKind), zap.String("error", c.errMsg))
	}
	if c.conf != nil && c.conf.LogPayloads {
		fields = append(fields, zap.String("request_body", clip(c.reqBody)), zap.String("response_body", clip(c.respBody)))
	}
	ce.Write(fields...)
}

// clip keeps a logged body short and valid UTF-8.
func clip(b []byte) string {
	if len(b) > maxLoggedPayload {
		b = b[:maxLoggedPayload]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}

// clientIP is the client as APISIX saw it, else the peer.
func clientIP(r *http.Request) string {
	if ip := r.Header.Get("X-Real-Ip"); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// callIDs names calls uniquely across runner restarts: a random prefix per
// process and a counter, so naming a call costs no syscall.
type callIDs struct {
	prefix string
	n      atomic.Uint64
}

func newCallIDs() *callIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &callIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *callIDs) next() string {
	var buf [32]byte
	out := append(buf[:0], g.prefix...)
	return string(strconv.AppendUint(out, g.n.Add(1), 36))
}

// attemptsField logs each attempt as an object.
type attemptsField []attemptLog

func (as attemptsField) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, a := range as {
		_ = enc.AppendObject(zapcore.ObjectMarshalerFunc(func(o zapcore.ObjectEncoder) error {
			o.AddString("instance", a.instance)
			o.AddString("provider", a.provider)
			o.AddInt("status", a.status)
			o.AddInt64("duration_ms", a.duration.Milliseconds())
			if a.reason != "" {
				o.AddString("reason", a.reason)
			}
			return nil
		}))
	}
	return nil
}

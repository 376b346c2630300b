package aiproxy

import (
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logCall writes the one line per relayed call. It names the upstream host,
// never the URL (auth.query keys) or any header.
func (p *Plugin) logCall(r *http.Request, c *call) {
	level := zap.InfoLevel
	if c.errKind != "" && c.errKind != "upstream_status" {
		level = zap.WarnLevel
	}
	ce := p.log.Check(level, "llm call")
	if ce == nil {
		return
	}
	fields := []zapcore.Field{
		zap.String("provider", c.provider),
		zap.String("request_model", c.requestModel),
		zap.String("model", c.obs.Model),
		zap.String("api", string(c.api)),
		zap.Bool("stream", c.stream),
		zap.Int("status", c.status),
		zap.String("upstream_host", c.upstreamHost),
		zap.Int64("ttft_ms", c.ttft.Milliseconds()),
		zap.Int64("duration_ms", time.Since(c.start).Milliseconds()),
		zap.Int64("bytes_in", c.bytesIn),
		zap.Int64("bytes_out", c.bytesOut),
		zap.String("client_ip", clientIP(r)),
	}
	if c.obs.UsageSeen {
		u := c.obs.Usage
		fields = append(fields,
			zap.Int64("prompt_tokens", u.Prompt),
			zap.Int64("completion_tokens", u.Completion),
			zap.Int64("total_tokens", u.Total))
	}
	if c.stream {
		fields = append(fields, zap.Bool("done", c.sawDone))
	}
	if c.errKind != "" {
		fields = append(fields, zap.String("error_kind", c.errKind), zap.String("error", c.errMsg))
	}
	ce.Write(fields...)
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

package apisix

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// AccessLogFormat renders nginx_config.http.access_log_format the way nginx
// does, with access_log_format_escape json. Like nginx, it refuses a format
// naming a variable nginx does not have: APISIX's route_id, for one, is a
// Lua context variable, and `[emerg] unknown "route_id" variable` stops
// nginx at start (seen on APISIX 3.18; the double had accepted it).
type AccessLogFormat struct {
	parts []logPart
}

type logPart struct {
	lit string
	v   string // variable name, "" for a literal
}

var logVar = regexp.MustCompile(`\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// knownVars are the variables of nginx and every APISIX 3.x template that
// the double can fill; upstream_http_* is open-ended.
var knownVars = map[string]bool{
	"time_iso8601": true, "time_local": true, "request_id": true, "remote_addr": true,
	"request_method": true, "uri": true, "request_uri": true, "status": true,
	"upstream_status": true, "upstream_addr": true, "upstream_header_time": true,
	"upstream_response_time": true, "request_time": true, "body_bytes_sent": true,
	"bytes_sent": true,
}

// LoadAccessLogFormat reads nginx_config.http.access_log_format from an
// APISIX config.yaml (the project's conf/config.yaml).
func LoadAccessLogFormat(path string) (*AccessLogFormat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c struct {
		NginxConfig struct {
			HTTP struct {
				Format string `yaml:"access_log_format"`
			} `yaml:"http"`
		} `yaml:"nginx_config"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.NginxConfig.HTTP.Format == "" {
		return nil, fmt.Errorf("%s has no nginx_config.http.access_log_format", path)
	}
	f, err := ParseAccessLogFormat(c.NginxConfig.HTTP.Format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ParseAccessLogFormat checks every variable of format.
func ParseAccessLogFormat(format string) (*AccessLogFormat, error) {
	f := &AccessLogFormat{}
	last := 0
	for _, m := range logVar.FindAllStringSubmatchIndex(format, -1) {
		name := format[m[2]:m[3]]
		if !knownVars[name] && !strings.HasPrefix(name, "upstream_http_") {
			return nil, fmt.Errorf(`unknown %q variable`, name)
		}
		f.parts = append(f.parts, logPart{lit: format[last:m[0]]}, logPart{v: name})
		last = m[1]
	}
	f.parts = append(f.parts, logPart{lit: format[last:]})
	return f, nil
}

// Line renders one entry; an empty value is "" as nginx writes it with
// json escaping.
func (f *AccessLogFormat) Line(e AccessEntry) string {
	var b strings.Builder
	for _, p := range f.parts {
		if p.v == "" {
			b.WriteString(p.lit)
			continue
		}
		v := e.value(p.v)
		q, _ := json.Marshal(v)
		b.WriteString(string(q[1 : len(q)-1]))
	}
	return b.String()
}

func secs(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

func (e AccessEntry) value(name string) string {
	if h, ok := strings.CutPrefix(name, "upstream_http_"); ok {
		if e.UpstreamHeader == nil {
			return ""
		}
		return e.UpstreamHeader.Get(strings.ReplaceAll(h, "_", "-"))
	}
	switch name {
	case "time_iso8601":
		return e.Time.Format(time.RFC3339)
	case "time_local":
		return e.Time.Format("02/Jan/2006:15:04:05 -0700")
	case "request_id":
		return e.RequestID
	case "remote_addr":
		host, _, err := net.SplitHostPort(e.RemoteAddr)
		if err != nil {
			return e.RemoteAddr
		}
		return host
	case "request_method":
		return e.Method
	case "uri", "request_uri":
		if name == "uri" {
			if i := strings.IndexByte(e.URI, '?'); i >= 0 {
				return e.URI[:i]
			}
		}
		return e.URI
	case "status":
		return strconv.Itoa(e.Status)
	case "upstream_status":
		if e.UpstreamStatus == 0 {
			return ""
		}
		return strconv.Itoa(e.UpstreamStatus)
	case "upstream_addr":
		return e.UpstreamAddr
	case "upstream_header_time":
		return secs(e.UpstreamHeaderTime)
	case "upstream_response_time":
		return secs(e.UpstreamResponseTime)
	case "request_time":
		return strconv.FormatFloat(e.RequestTime.Seconds(), 'f', 3, 64)
	case "body_bytes_sent", "bytes_sent":
		return strconv.FormatInt(e.BytesSent, 10)
	}
	return ""
}

// newRequestID is nginx's $request_id: 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

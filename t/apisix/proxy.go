package apisix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	"github.com/tidwall/gjson"
)

// Handler is the data plane (port 9080).
func (g *Gateway) Handler() http.Handler { return http.HandlerFunc(g.serve) }

// reqState is the request as plugins have left it.
type reqState struct {
	header       http.Header
	host         string
	args         url.Values
	argsChanged  bool
	body         []byte
	upstreamPath string // escaped; "" = the client's path
	respHeader   http.Header
}

var methods = map[string]A6.Method{
	"GET": A6.MethodGET, "HEAD": A6.MethodHEAD, "POST": A6.MethodPOST, "PUT": A6.MethodPUT,
	"DELETE": A6.MethodDELETE, "MKCOL": A6.MethodMKCOL, "COPY": A6.MethodCOPY, "MOVE": A6.MethodMOVE,
	"OPTIONS": A6.MethodOPTIONS, "PROPFIND": A6.MethodPROPFIND, "PROPPATCH": A6.MethodPROPPATCH,
	"LOCK": A6.MethodLOCK, "UNLOCK": A6.MethodUNLOCK, "PATCH": A6.MethodPATCH, "TRACE": A6.MethodTRACE,
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	entry := AccessEntry{Time: time.Now(), Method: r.Method, URI: r.URL.RequestURI(), RemoteAddr: r.RemoteAddr, RequestID: newRequestID()}
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		entry.RequestTime = time.Since(entry.Time)
		entry.BytesSent = cw.n.Load()
		if entry.Status == 0 {
			entry.Status = cw.status
		}
		g.logAccess(entry)
	}()
	// nginx reads the whole request body before it talks to the upstream.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		entry.Status = 400
		http.Error(cw, "bad request", 400)
		return
	}
	var rt *route
	vars := func(name string) any { return g.variable(r, body, rt, name) }
	rt = g.match(r, vars)
	if rt == nil {
		entry.Status = 404
		cw.Header().Set("Content-Type", "application/json")
		cw.WriteHeader(404)
		io.WriteString(cw, `{"error_msg":"404 Route Not Found"}`+"\n")
		return
	}
	entry.RouteID = rt.id
	st := &reqState{header: r.Header.Clone(), host: r.Host, args: r.URL.Query(), body: body, respHeader: http.Header{}}
	wk := g.pickWorker()
	for _, p := range orderedPlugins(rt.plugins) {
		called := time.Now()
		act, err := g.callPlugin(wk, rt, p, r, st, vars)
		entry.ExtPluginTime += time.Since(called)
		if err != nil {
			g.opts.Logf("%s: %v", p.name, err)
			entry.ExtPluginError = err.Error()
			if p.degradation {
				g.opts.Logf("Plugin Runner is wrong, allow degradation")
				continue
			}
			entry.Status = 503
			htmlError(cw, 503, "Service Temporarily Unavailable")
			return
		}
		switch act.kind {
		case hrc.ActionStop:
			entry.Status = applyStop(cw, act, p.name, g.opts.Logf)
			return
		case hrc.ActionRewrite:
			applyRewrite(st, act)
		}
	}
	for k, v := range st.respHeader {
		cw.Header()[k] = v
	}
	g.proxy(cw, r, rt, st, &entry)
}

// orderedPlugins runs pre-req (rewrite phase) before post-req (access phase).
func orderedPlugins(ps []extPlugin) []extPlugin {
	var out []extPlugin
	for _, name := range []string{"ext-plugin-pre-req", "ext-plugin-post-req"} {
		for _, p := range ps {
			if p.name == name {
				out = append(out, p)
			}
		}
	}
	return out
}

func (g *Gateway) match(r *http.Request, vars func(string) any) *route {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var best *route
	bestSpec := -1
	for _, rt := range g.routes {
		ok, spec := rt.matches(r, vars)
		if !ok {
			continue
		}
		if best == nil || rt.priority > best.priority || (rt.priority == best.priority && spec > bestSpec) ||
			(rt.priority == best.priority && spec == bestSpec && rt.id < best.id) {
			best, bestSpec = rt, spec
		}
	}
	return best
}

// callPlugin runs one ext-plugin: HTTPReqCall on a pooled connection, the
// token from the caches or PrepareConf, and the CONF_TOKEN_NOT_FOUND retry
// (at most 3 attempts, §4).
func (g *Gateway) callPlugin(wk *worker, rt *route, p extPlugin, r *http.Request, st *reqState, vars func(string) any) (*action, error) {
	key := fmt.Sprintf("route#%s#%s#%d", rt.id, p.name, rt.version)
	method, ok := methods[r.Method]
	if !ok {
		return nil, fmt.Errorf("unsupported method %s", r.Method)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := g.conn(wk) // the call's connection is taken first (§2)
		if err != nil {
			return nil, err
		}
		tok, err := g.token(wk, key, p.conf)
		if err != nil {
			c.Close()
			return nil, err
		}
		g.reqCallCount.Add(1)
		call := &reqCall{
			id:      uint32(wk.id)<<22 + wk.counter.Add(1)%(1<<22),
			srcIP:   srcIP(r),
			method:  method,
			path:    callPath(r, st),
			args:    argEntries(st.args),
			headers: headerEntries(st.header, st.host),
			token:   tok,
		}
		act, err := httpReqCall(c, call, func(info ei.Info, name string) ([]byte, error) {
			g.extraCount.Add(1)
			return g.extraInfo(info, name, st, vars)
		})
		if err == nil {
			wk.put(c)
			return act, nil
		}
		c.Close()
		if !errors.Is(err, errTokenNotFound) {
			return nil, fmt.Errorf("failed to receive RPC_HTTP_REQ_CALL: %w", err)
		}
		g.opts.Logf("refresh cache and try again")
		g.retries.Add(1)
		g.shared.flush()
		wk.lruFlush()
		lastErr = err
	}
	return nil, fmt.Errorf("failed to receive RPC_HTTP_REQ_CALL: %w", lastErr)
}

func (g *Gateway) extraInfo(info ei.Info, name string, st *reqState, vars func(string) any) ([]byte, error) {
	switch info {
	case ei.InfoVar:
		return luaToString(vars(name)), nil
	case ei.InfoReqBody:
		if len(st.body) == 0 {
			return nil, nil
		}
		return st.body, nil
	case ei.InfoRespBody:
		g.opts.Logf("failed to read response body: not exits")
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported info type: %d", info)
}

// luaToString is Lua's tostring for the values ctx.var can hold; nil is an
// absent result.
func luaToString(v any) []byte {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(x)
	case float64:
		return []byte(strconv.FormatFloat(x, 'f', -1, 64))
	case bool:
		return []byte(strconv.FormatBool(x))
	}
	return []byte(fmt.Sprintf("table: %p", &v))
}

// variable resolves an nginx/APISIX variable for vars and ExtraInfo.
func (g *Gateway) variable(r *http.Request, body []byte, rt *route, name string) any {
	switch {
	case strings.HasPrefix(name, "post_arg."):
		return postArg(r, body, strings.TrimPrefix(name, "post_arg."))
	case strings.HasPrefix(name, "arg_"):
		if v, ok := r.URL.Query()[strings.TrimPrefix(name, "arg_")]; ok {
			return v[0]
		}
		return nil
	case strings.HasPrefix(name, "http_"):
		h := strings.ReplaceAll(strings.TrimPrefix(name, "http_"), "_", "-")
		if v := r.Header.Values(h); len(v) > 0 {
			return strings.Join(v, ", ")
		}
		return nil
	}
	switch name {
	case "uri":
		return r.URL.Path
	case "request_uri":
		return r.URL.RequestURI()
	case "host":
		h, _, _ := strings.Cut(r.Host, ":")
		return h
	case "remote_addr":
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		return ip
	case "server_addr":
		return "127.0.0.1"
	case "request_method":
		return r.Method
	case "scheme":
		return "http"
	case "route_id":
		if rt != nil {
			return rt.id
		}
	}
	return nil
}

// postArg reads post_arg.<path> from a JSON or form body (§11).
func postArg(r *http.Request, body []byte, path string) any {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.Contains(ct, "application/json"):
		if !gjson.ValidBytes(body) {
			return nil
		}
		if strings.ContainsAny(path, "[*") || strings.Contains(path, "..") {
			// JSONPath: the list of matches; gjson spells [*] as .#.
			p := strings.NewReplacer("[*]", ".#", "[", ".", "]", "").Replace(path)
			res := gjson.GetBytes(body, p)
			if !res.Exists() {
				return nil
			}
			var out []any
			res.ForEach(func(_, v gjson.Result) bool {
				out = append(out, toLua(v.Value()))
				return true
			})
			return flatten(out)
		}
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil
		}
		for _, k := range strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '(' || r == ')' }) {
			m, ok := doc.(map[string]any)
			if !ok {
				return nil
			}
			doc = m[k]
		}
		return toLua(doc)
	case strings.Contains(ct, "application/x-www-form-urlencoded"):
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil
		}
		if v, ok := form[path]; ok {
			return v[0]
		}
	}
	return nil
}

func toLua(v any) any {
	if l, ok := v.([]any); ok {
		return l
	}
	return v
}

func flatten(list []any) []any {
	var out []any
	for _, x := range list {
		if sub, ok := x.([]any); ok {
			out = append(out, flatten(sub)...)
		} else {
			out = append(out, x)
		}
	}
	return out
}

func srcIP(r *http.Request) []byte {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// callPath is $uri, or the path part of a $upstream_uri set by an earlier
// plugin (§5).
func callPath(r *http.Request, st *reqState) string {
	if st.upstreamPath != "" {
		p, _, _ := strings.Cut(st.upstreamPath, "?")
		return p
	}
	return r.URL.Path
}

func argEntries(args url.Values) []entry {
	out := []entry{}
	for k, vs := range args {
		for _, v := range vs {
			out = append(out, entry{name: k, value: strp(v)})
		}
	}
	return out
}

// headerEntries lower-cases names, one entry per value, host = upstream host.
func headerEntries(h http.Header, host string) []entry {
	out := []entry{{name: "host", value: strp(host)}}
	for k, vs := range h {
		if strings.EqualFold(k, "host") {
			continue
		}
		for _, v := range vs {
			out = append(out, entry{name: strings.ToLower(k), value: strp(v)})
		}
	}
	return out
}

// applyStop answers from APISIX (§7) and returns the status.
func applyStop(w http.ResponseWriter, a *action, plugin string, logf func(string, ...any)) int {
	status := a.status
	if status == 0 {
		status = 200
	}
	seen := map[string]bool{}
	for _, h := range a.headers {
		name := strings.ToLower(h.name)
		val := ""
		if h.value != nil {
			val = *h.value
		}
		if seen[name] {
			w.Header().Add(name, val)
		} else {
			w.Header().Set(name, val)
			seen[name] = true
		}
	}
	if status >= 400 {
		logf("%s exits with http status code %d", plugin, status)
	}
	if len(a.body) > 0 {
		w.WriteHeader(status)
		w.Write(a.body)
	} else if status >= 300 {
		htmlError(w, status, http.StatusText(status))
	} else {
		w.WriteHeader(status)
	}
	return status
}

// excludedRespHeaders cannot be set by a Rewrite's resp_headers (§7).
var excludedRespHeaders = map[string]bool{
	"connection": true, "content-length": true, "transfer-encoding": true, "location": true,
	"server": true, "www-authenticate": true, "content-encoding": true, "content-type": true,
	"content-location": true, "content-language": true,
}

// applyRewrite applies a Rewrite in APISIX's order (§7).
func applyRewrite(st *reqState, a *action) {
	pathSet := a.path != nil
	if pathSet {
		st.upstreamPath = escapeURI(*a.path)
	}
	for _, h := range a.headers {
		if h.value == nil {
			st.header.Del(h.name)
			if strings.EqualFold(h.name, "host") {
				st.host = ""
			}
			continue
		}
		st.header.Set(h.name, *h.value)
		if strings.EqualFold(h.name, "host") {
			st.host = *h.value
		}
	}
	if len(a.body) > 0 {
		st.body = a.body
	}
	seen := map[string]bool{}
	for _, h := range a.respHeaders {
		name := strings.ToLower(h.name)
		if excludedRespHeaders[name] || h.value == nil {
			continue
		}
		if seen[name] {
			st.respHeader.Add(name, *h.value)
		} else {
			st.respHeader.Set(name, *h.value)
			seen[name] = true
		}
	}
	replaced := map[string]bool{}
	for _, e := range a.args {
		st.argsChanged = true
		if e.value == nil {
			delete(st.args, e.name)
			continue
		}
		if !replaced[e.name] {
			st.args[e.name] = []string{*e.value}
			replaced[e.name] = true
		} else {
			st.args[e.name] = append(st.args[e.name], *e.value)
		}
	}
	if pathSet {
		st.argsChanged = true // $upstream_uri = path + $is_args + $args (3.16+)
	}
}

// escapeURI is ngx_escape_uri(NGX_ESCAPE_URI): space, #, %, ?, control
// bytes and bytes ≥ 0x7F.
func escapeURI(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || c == '?' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func htmlError(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html>\n<head><title>%d %s</title></head>\n<body>\n<center><h1>%d %s</h1></center>\n<hr><center>openresty</center>\n</body>\n</html>\n", status, text, status, text)
}

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// proxy is nginx's proxy_pass to the route's upstream.
func (g *Gateway) proxy(w *countingWriter, r *http.Request, rt *route, st *reqState, entry *AccessEntry) {
	u := rt.upstream
	if u == nil {
		g.mu.RLock()
		u = g.upstreams[rt.upstreamID]
		g.mu.RUnlock()
	}
	if u == nil || len(u.nodes) == 0 {
		entry.Status = 503
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		fmt.Fprintf(w, `{"error_msg":"failed to find upstream by id: %s"}`+"\n", rt.upstreamID)
		return
	}
	node := u.nodes[int(g.nextNode.Add(1))%len(u.nodes)]
	entry.UpstreamAddr = node
	path := r.URL.EscapedPath()
	if st.upstreamPath != "" {
		path = st.upstreamPath
	}
	query := r.URL.RawQuery
	if st.argsChanged {
		query = st.args.Encode()
	}
	target := u.scheme + "://" + node + path
	if query != "" {
		target += "?" + query
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var timedOut atomic.Bool
	readTimeout := time.Duration(u.timeout.read * float64(time.Second))
	idle := time.AfterFunc(readTimeout, func() { timedOut.Store(true); cancel() })
	defer idle.Stop()

	out, err := http.NewRequestWithContext(ctx, r.Method, target, bytes.NewReader(st.body))
	if err != nil {
		entry.Status = 500
		htmlError(w, 500, "Internal Server Error")
		return
	}
	for k, vs := range st.header {
		out.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	switch u.passHost {
	case "node":
		out.Host = node
	case "rewrite":
		out.Host = u.upstreamHost
	default:
		out.Host = st.host
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	out.Header.Set("X-Real-IP", ip)
	if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
		out.Header.Set("X-Forwarded-For", prior+", "+ip)
	} else {
		out.Header.Set("X-Forwarded-For", ip)
	}
	_, serverPort, _ := net.SplitHostPort(r.Host)
	if serverPort == "" {
		serverPort = "80"
	}
	out.Header.Set("X-Forwarded-Proto", "http")
	out.Header.Set("X-Forwarded-Host", strings.Split(r.Host, ":")[0])
	out.Header.Set("X-Forwarded-Port", serverPort)

	sent := time.Now()
	resp, err := g.transport.RoundTrip(out)
	if err != nil {
		entry.Status = 502
		if timedOut.Load() {
			entry.Status = 504
		}
		g.opts.Logf("upstream %s: %v", node, err)
		if r.Context().Err() == nil {
			htmlError(w, entry.Status, http.StatusText(entry.Status))
		}
		return
	}
	defer resp.Body.Close()
	entry.UpstreamHeaderTime = time.Since(sent)
	entry.UpstreamStatus = resp.StatusCode
	entry.UpstreamHeader = resp.Header.Clone()
	entry.Status = resp.StatusCode

	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = append([]string(nil), vs...)
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	// nginx consumes X-Accel-Buffering: "no" turns response buffering off.
	unbuffered := strings.EqualFold(resp.Header.Get("X-Accel-Buffering"), "no")
	h.Del("X-Accel-Buffering")
	w.WriteHeader(resp.StatusCode)

	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var pending []byte
	flush := func() bool {
		if len(pending) == 0 {
			return true
		}
		_, err := w.Write(pending)
		pending = pending[:0]
		if err == nil {
			err = rc.Flush()
		}
		return err == nil
	}
	for {
		n, err := resp.Body.Read(buf)
		idle.Reset(readTimeout)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			// With buffering on, nginx holds small pieces back until a
			// buffer fills or the answer ends.
			if (unbuffered || len(pending) >= 4096) && !flush() {
				cancel() // the client went away: stop the upstream call
				return
			}
		}
		if errors.Is(err, io.EOF) {
			flush()
			entry.UpstreamResponseTime = time.Since(sent)
			return
		}
		if err != nil {
			entry.UpstreamResponseTime = time.Since(sent)
			if r.Context().Err() != nil {
				return
			}
			flush()
			g.opts.Logf("upstream prematurely closed connection while reading upstream: %v", err)
			// nginx closes the client connection: the response is cut.
			panic(http.ErrAbortHandler)
		}
	}
}

// copyBufs hold the proxy's read buffers, as nginx reuses its proxy buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// countingWriter counts bytes and status for the access log.
type countingWriter struct {
	http.ResponseWriter
	n      atomic.Int64
	status int
}

func (c *countingWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
	c.ResponseWriter.WriteHeader(s)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = 200
	}
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

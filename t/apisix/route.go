package apisix

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// route is a stored route, parsed once at PUT time like APISIX's schema check.
type route struct {
	id         string
	version    int
	raw        json.RawMessage
	uris       []string
	methods    []string
	hosts      []string
	vars       []any
	priority   int
	disabled   bool
	plugins    []extPlugin // ext-plugin-pre-req then ext-plugin-post-req
	upstream   *upstream
	upstreamID string
}

// extPlugin is one ext-plugin-* instance on a route (§4 schema).
type extPlugin struct {
	name        string
	conf        []entry // nil when the plugin has no `conf`
	degradation bool
}

type upstream struct {
	nodes        []string
	scheme       string
	passHost     string
	upstreamHost string
	timeout      struct{ connect, send, read float64 }
}

type routeJSON struct {
	ID         any                        `json:"id"`
	URI        string                     `json:"uri"`
	URIs       []string                   `json:"uris"`
	Methods    []string                   `json:"methods"`
	Host       string                     `json:"host"`
	Hosts      []string                   `json:"hosts"`
	Vars       []any                      `json:"vars"`
	Priority   int                        `json:"priority"`
	Status     *int                       `json:"status"`
	Plugins    map[string]json.RawMessage `json:"plugins"`
	Upstream   json.RawMessage            `json:"upstream"`
	UpstreamID any                        `json:"upstream_id"`
}

func idString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

// parseRoute checks a route as the Admin API does; errors read like APISIX's.
func parseRoute(id string, raw []byte) (*route, error) {
	var rj routeJSON
	if err := json.Unmarshal(raw, &rj); err != nil {
		return nil, fmt.Errorf("invalid request body: %v", err)
	}
	if id == "" {
		id = idString(rj.ID)
	}
	rt := &route{id: id, raw: raw, methods: rj.Methods, vars: rj.Vars, priority: rj.Priority, upstreamID: idString(rj.UpstreamID)}
	rt.uris = append(rt.uris, rj.URIs...)
	if rj.URI != "" {
		rt.uris = append(rt.uris, rj.URI)
	}
	if len(rt.uris) == 0 {
		return nil, fmt.Errorf(`invalid configuration: value should match only one schema, but matches none`)
	}
	rt.hosts = append(rt.hosts, rj.Hosts...)
	if rj.Host != "" {
		rt.hosts = append(rt.hosts, rj.Host)
	}
	rt.disabled = rj.Status != nil && *rj.Status == 0
	if rj.Vars != nil {
		if _, err := evalExpr(rj.Vars, func(string) any { return nil }); err != nil {
			return nil, fmt.Errorf("failed to validate the 'vars' expression: %v", err)
		}
	}
	names := make([]string, 0, len(rj.Plugins))
	for name := range rj.Plugins {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name != "ext-plugin-pre-req" && name != "ext-plugin-post-req" {
			return nil, fmt.Errorf("unknown plugin [%s]", name)
		}
		p, err := parseExtPlugin(name, rj.Plugins[name])
		if err != nil {
			return nil, err
		}
		rt.plugins = append(rt.plugins, p)
	}
	if len(rj.Upstream) > 0 {
		u, err := parseUpstream(rj.Upstream)
		if err != nil {
			return nil, err
		}
		rt.upstream = u
	}
	if rt.upstream == nil && rt.upstreamID == "" {
		return nil, fmt.Errorf("missing upstream configuration in Route or Service")
	}
	return rt, nil
}

func parseExtPlugin(name string, raw json.RawMessage) (extPlugin, error) {
	fail := func(msg string) (extPlugin, error) {
		return extPlugin{}, fmt.Errorf("failed to check the configuration of plugin %s err: %s", name, msg)
	}
	var pj struct {
		Conf             *[]map[string]any `json:"conf"`
		AllowDegradation bool              `json:"allow_degradation"`
	}
	if err := json.Unmarshal(raw, &pj); err != nil {
		return fail(err.Error())
	}
	p := extPlugin{name: name, degradation: pj.AllowDegradation}
	if pj.Conf == nil {
		return p, nil
	}
	if len(*pj.Conf) == 0 {
		return fail(`property "conf" validation failed: expect array to have at least 1 items`)
	}
	p.conf = []entry{}
	for _, item := range *pj.Conf {
		n, ok := item["name"].(string)
		if !ok {
			return fail(`property "conf" validation failed: failed to validate item 1: property "name" is required`)
		}
		if len(n) < 1 || len(n) > 128 {
			return fail(`property "conf" validation failed: property "name" validation failed: string too long or short`)
		}
		v, ok := item["value"].(string)
		if !ok {
			return fail(`property "conf" validation failed: failed to validate item 1: property "value" is required`)
		}
		p.conf = append(p.conf, entry{name: n, value: strp(v)})
	}
	return p, nil
}

func parseUpstream(raw []byte) (*upstream, error) {
	var uj struct {
		Nodes        json.RawMessage `json:"nodes"`
		Scheme       string          `json:"scheme"`
		PassHost     string          `json:"pass_host"`
		UpstreamHost string          `json:"upstream_host"`
		Timeout      *struct {
			Connect, Send, Read float64
		} `json:"timeout"`
	}
	if err := json.Unmarshal(raw, &uj); err != nil {
		return nil, fmt.Errorf("invalid request body: %v", err)
	}
	u := &upstream{scheme: uj.Scheme, passHost: uj.PassHost, upstreamHost: uj.UpstreamHost}
	if u.scheme == "" {
		u.scheme = "http"
	}
	if u.passHost == "" {
		u.passHost = "pass"
	}
	u.timeout.connect, u.timeout.send, u.timeout.read = 60, 60, 60
	if uj.Timeout != nil {
		u.timeout.connect, u.timeout.send, u.timeout.read = uj.Timeout.Connect, uj.Timeout.Send, uj.Timeout.Read
	}
	var asMap map[string]int
	var asList []struct {
		Host   string `json:"host"`
		Port   int    `json:"port"`
		Weight int    `json:"weight"`
	}
	switch {
	case json.Unmarshal(uj.Nodes, &asMap) == nil && len(asMap) > 0:
		for n, w := range asMap {
			if w > 0 {
				u.nodes = append(u.nodes, n)
			}
		}
	case json.Unmarshal(uj.Nodes, &asList) == nil && len(asList) > 0:
		for _, n := range asList {
			if n.Weight > 0 {
				u.nodes = append(u.nodes, fmt.Sprintf("%s:%d", n.Host, n.Port))
			}
		}
	default:
		return nil, fmt.Errorf(`invalid configuration: property "nodes" is required`)
	}
	sort.Strings(u.nodes)
	return u, nil
}

// matches reports whether the route serves r; it returns the route's
// specificity for ordering (exact uri beats prefix, longer prefix wins).
func (rt *route) matches(r *http.Request, vars func(string) any) (bool, int) {
	if rt.disabled {
		return false, 0
	}
	best := -1
	for _, u := range rt.uris {
		if p, ok := strings.CutSuffix(u, "*"); ok {
			if strings.HasPrefix(r.URL.Path, p) && len(p) > best {
				best = len(p)
			}
		} else if r.URL.Path == u {
			best = 1 << 20
		}
	}
	if best < 0 {
		return false, 0
	}
	if len(rt.methods) > 0 && !contains(rt.methods, r.Method) {
		return false, 0
	}
	if len(rt.hosts) > 0 {
		host := r.Host
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		if !contains(rt.hosts, host) {
			return false, 0
		}
	}
	if rt.vars != nil {
		ok, err := evalExpr(rt.vars, vars)
		if err != nil || !ok {
			return false, 0
		}
	}
	return true, best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package apisix

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

var generatedIDs atomic.Int64

// AdminHandler is a minimal Admin API (port 9180) for routes and upstreams.
func (g *Gateway) AdminHandler() http.Handler { return http.HandlerFunc(g.admin) }

func (g *Gateway) admin(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/apisix/admin/")
	if !ok {
		adminReply(w, 404, map[string]string{"error_msg": "404 Not Found"})
		return
	}
	kind, id, _ := strings.Cut(strings.Trim(rest, "/"), "/")
	if kind != "routes" && kind != "upstreams" {
		adminReply(w, 404, map[string]string{"error_msg": "404 Not Found"})
		return
	}
	body, _ := io.ReadAll(r.Body)
	switch r.Method {
	case http.MethodGet:
		g.mu.RLock()
		var raw json.RawMessage
		if kind == "routes" && g.routes[id] != nil {
			raw = g.routes[id].raw
		} else if kind == "upstreams" && g.upstreams[id] != nil {
			raw = json.RawMessage(`{}`)
		}
		g.mu.RUnlock()
		if raw == nil {
			adminReply(w, 404, map[string]string{"message": "Key not found"})
			return
		}
		adminReply(w, 200, map[string]any{"key": "/apisix/" + kind + "/" + id, "value": raw})
	case http.MethodDelete:
		g.mu.Lock()
		delete(g.routes, id)
		delete(g.upstreams, id)
		g.mu.Unlock()
		adminReply(w, 200, map[string]any{"key": "/apisix/" + kind + "/" + id, "deleted": "1"})
	case http.MethodPut, http.MethodPost:
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			adminReply(w, 400, map[string]string{"error_msg": "invalid request body: " + err.Error()})
			return
		}
		if id == "" {
			id = idString(obj["id"])
		}
		if id == "" && r.Method == http.MethodPost {
			id = fmt.Sprintf("%020d", generatedIDs.Add(1))
		}
		if id == "" {
			adminReply(w, 400, map[string]string{"error_msg": "missing id"})
			return
		}
		var created bool
		var err error
		if kind == "routes" {
			created, err = g.putRoute(id, body)
		} else {
			created, err = g.putUpstream(id, body)
		}
		if err != nil {
			adminReply(w, 400, map[string]string{"error_msg": err.Error()})
			return
		}
		status := 200
		if created {
			status = 201
		}
		adminReply(w, status, map[string]any{"key": "/apisix/" + kind + "/" + id, "value": json.RawMessage(body)})
	default:
		adminReply(w, 405, map[string]string{"error_msg": "not allowed"})
	}
}

func adminReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// PutRoute stores a route as the Admin API would.
func (g *Gateway) PutRoute(id string, routeJSON []byte) error {
	_, err := g.putRoute(id, routeJSON)
	return err
}

// PutUpstream stores an upstream as the Admin API would.
func (g *Gateway) PutUpstream(id string, upstreamJSON []byte) error {
	_, err := g.putUpstream(id, upstreamJSON)
	return err
}

// DeleteRoute removes a route.
func (g *Gateway) DeleteRoute(id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.routes, id)
	return nil
}

func (g *Gateway) putRoute(id string, raw []byte) (bool, error) {
	rt, err := parseRoute(id, raw)
	if err != nil {
		return false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, existed := g.routes[id]
	// Every edit is a new version, so a new token key (§4).
	g.versions[id]++
	rt.version = g.versions[id]
	g.routes[id] = rt
	return !existed, nil
}

func (g *Gateway) putUpstream(id string, raw []byte) (bool, error) {
	u, err := parseUpstream(raw)
	if err != nil {
		return false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, existed := g.upstreams[id]
	g.upstreams[id] = u
	return !existed, nil
}

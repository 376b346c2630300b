// Package aiproxymulti is the ai-proxy-multi ext plugin: several provider
// instances per route, chosen by priority, weight or a consistent hash and
// by the request's model, with fallback between them. It shares the
// ai-proxy relay, which makes the attempts.
package aiproxymulti

import (
	"net/http"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy"
)

// Name is the plugin name routes use in their ext-plugin-pre-req conf.
const Name = aiproxy.MultiName

// Plugin is the ai-proxy-multi plugin.
type Plugin struct {
	plugin.DefaultPlugin
	relay *aiproxy.Plugin
}

// New makes the plugin on the relay that serves ai-proxy too, so both
// share tickets, connection pools and the instances' health.
func New(relay *aiproxy.Plugin) *Plugin { return &Plugin{relay: relay} }

// Name implements plugin.Plugin.
func (p *Plugin) Name() string { return Name }

// ParseConf implements plugin.Plugin; an invalid conf is returned as one
// that answers every request of its route with the error (see aiproxy).
func (p *Plugin) ParseConf(in []byte) (any, error) {
	return p.relay.ParseMultiConf(in), nil
}

// RequestFilter implements plugin.Plugin.
func (p *Plugin) RequestFilter(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	p.relay.Filter(conf, w, r)
}

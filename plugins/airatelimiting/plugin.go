// Package airatelimiting is the ai-rate-limiting ext plugin: token (or
// cost) budgets per route, instance, consumer or any request key, with
// APISIX 3.18's conf fields. APISIX's own plugin does nothing behind the
// runner (it needs APISIX's Lua ai-proxy to have picked an instance), so
// the runner enforces them: the pre-req filter hands the budgets to the
// relay, which reserves each attempt's estimate before calling the
// provider and charges the real usage when the call ends.
package airatelimiting

import (
	"net/http"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy"
)

// Name is the plugin name routes use in their ext-plugin-pre-req conf.
const Name = aiproxy.LimitName

// Plugin is the ai-rate-limiting plugin.
type Plugin struct {
	plugin.DefaultPlugin
	relay *aiproxy.Plugin
}

// New makes the plugin on the relay that serves the route's ai-proxy or
// ai-proxy-multi.
func New(relay *aiproxy.Plugin) *Plugin { return &Plugin{relay: relay} }

// Name implements plugin.Plugin.
func (p *Plugin) Name() string { return Name }

// ParseConf implements plugin.Plugin; an invalid conf answers every
// request of its route with the error.
func (p *Plugin) ParseConf(in []byte) (any, error) {
	return p.relay.ParseLimitConf(in), nil
}

// RequestFilter implements plugin.Plugin.
func (p *Plugin) RequestFilter(conf any, w http.ResponseWriter, r pkgHTTP.Request) {
	p.relay.FilterLimit(conf, w, r)
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/balance"
	"github.com/ai-proxy-runner/ai-proxy-runner/plugins/aiproxy/limit"
	"github.com/ai-proxy-runner/ai-proxy-runner/providers"
)

const defaultUpstreamID = "ai-proxy-relay"

// route is `ai-proxy-runner route [flags] [file]`: it reads a route that
// uses the ai-proxy plugin (as the APISIX/API7 docs show it) and prints the
// same route for stock APISIX, with the plugin inside ext-plugin-pre-req.
func route(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("route", flag.ContinueOnError)
	fs.SetOutput(stderr)
	upstreamID := fs.String("upstream-id", defaultUpstreamID, "id of the APISIX upstream that points at the relay")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: ai-proxy-runner route [--upstream-id ID] [route.json]   (stdin when no file)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	in, err := readInput(fs.Args(), stdin)
	if err == nil {
		var out []byte
		if out, err = convertRoute(in, *upstreamID); err == nil {
			_, err = stdout.Write(out)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "ai-proxy-runner route:", err)
		return 1
	}
	return 0
}

func readInput(args []string, stdin io.Reader) ([]byte, error) {
	switch {
	case len(args) > 1:
		return nil, errors.New("give at most one route file")
	case len(args) == 1 && args[0] != "-":
		return os.ReadFile(args[0])
	}
	return io.ReadAll(stdin)
}

// convertRoute moves plugins.ai-proxy into ext-plugin-pre-req's conf as an
// "ai-proxy" entry whose value is the plugin's JSON text, and points the
// route at the relay upstream. Everything else of the route is kept. The
// ai-proxy conf is validated first, so a broken conf fails here rather than
// on the first request.
func convertRoute(in []byte, upstreamID string) ([]byte, error) {
	in = stripLineComments(in)
	if !gjson.ValidBytes(in) {
		return nil, errors.New("input is not valid JSON")
	}
	root := gjson.ParseBytes(in)
	if !root.IsObject() {
		return nil, errors.New("input must be a JSON object (an APISIX route)")
	}
	single, multi := root.Get(`plugins.ai-proxy`), root.Get(`plugins.ai-proxy-multi`)
	name, conf := aiproxy.Name, single
	switch {
	case single.Exists() && multi.Exists():
		return nil, errors.New("the route has both ai-proxy and ai-proxy-multi; keep one")
	case multi.Exists():
		name, conf = aiproxy.MultiName, multi
	}
	if !conf.IsObject() {
		return nil, errors.New(`the route has no "plugins": {"ai-proxy": {...}} or {"ai-proxy-multi": {...}} object to convert`)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(conf.Raw)); err != nil {
		return nil, err
	}
	c := aiproxy.ParseConf(compact.Bytes())
	if name == aiproxy.MultiName {
		c = aiproxy.ParseMultiConf(compact.Bytes(), balance.NewRegistry())
	}
	if c.Err != nil && !credentialsFromEnv(c.Err) {
		return nil, fmt.Errorf("plugins.%s: %v", name, c.Err)
	}
	if upstreamID == "" {
		return nil, errors.New("--upstream-id must not be empty")
	}

	entry, _ := json.Marshal(map[string]string{"name": name, "value": compact.String()})
	entries := []string{string(entry)}
	out, err := sjson.DeleteBytes(in, `plugins.`+name)
	if err != nil {
		return nil, err
	}
	// APISIX's ai-rate-limiting does nothing behind the runner: the
	// runner's own takes its conf, before the proxy in the chain.
	if rl := root.Get(`plugins.` + aiproxy.LimitName); rl.Exists() {
		var rc bytes.Buffer
		if err := json.Compact(&rc, []byte(rl.Raw)); err != nil {
			return nil, err
		}
		if lc := aiproxy.ParseLimitConf(rc.Bytes(), limit.NewLocal(1), nil); lc.Err != nil {
			return nil, fmt.Errorf("plugins.%s: %v", aiproxy.LimitName, lc.Err)
		}
		e, _ := json.Marshal(map[string]string{"name": aiproxy.LimitName, "value": rc.String()})
		entries = append([]string{string(e)}, entries...)
		if out, err = sjson.DeleteBytes(out, `plugins.`+aiproxy.LimitName); err != nil {
			return nil, err
		}
	}
	pre := root.Get(`plugins.ext-plugin-pre-req`)
	switch {
	case !pre.Exists():
		out, err = sjson.SetRawBytes(out, `plugins.ext-plugin-pre-req`, []byte(`{"conf":[`+strings.Join(entries, ",")+`]}`))
	case pre.Get("conf").IsArray():
		// ai-proxy ends the chain: it answers or hands over to the relay.
		for _, e := range entries {
			if out, err = sjson.SetRawBytes(out, `plugins.ext-plugin-pre-req.conf.-1`, []byte(e)); err != nil {
				return nil, err
			}
		}
	default:
		out, err = sjson.SetRawBytes(out, `plugins.ext-plugin-pre-req.conf`, []byte(`[`+strings.Join(entries, ",")+`]`))
	}
	if err != nil {
		return nil, err
	}
	if out, err = sjson.DeleteBytes(out, "upstream"); err != nil {
		return nil, err
	}
	if out, err = sjson.SetBytes(out, "upstream_id", upstreamID); err != nil {
		return nil, err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		return nil, err
	}
	pretty.WriteByte('\n')
	return pretty.Bytes(), nil
}

// credentialsFromEnv tells a vertex-ai conf that relies on the runner's
// GCP_SERVICE_ACCOUNT: valid, though this machine may not have it set.
func credentialsFromEnv(err *providers.ConfError) bool {
	return strings.HasSuffix(err.Field, "auth.gcp.service_account_json") && err.Msg == providers.MsgServiceAccountRequired
}

// stripLineComments drops // comments outside strings, so a route pasted
// from the docs (which annotate fields that way) converts as is.
func stripLineComments(in []byte) []byte {
	out := make([]byte, 0, len(in))
	inString, escaped := false, false
	for i := 0; i < len(in); i++ {
		ch := in[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '/' && i+1 < len(in) && in[i+1] == '/':
			for i < len(in) && in[i] != '\n' {
				i++
			}
			if i < len(in) {
				out = append(out, '\n')
			}
			continue
		}
		out = append(out, ch)
	}
	return out
}

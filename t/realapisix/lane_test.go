package realapisix_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/httpsproxy"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/realapisix"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// The lane runs on the APISIX at APISIX_HOME (default /usr/local/apisix).
// Without one it skips, unless AI_PROXY_REQUIRE_APISIX=1 (CI), where a
// skip would hide that the lane did not run.
var (
	runnerBin string
	skipWhy   string
)

func TestMain(m *testing.M) {
	if err := realapisix.Available(realapisix.Home()); err != nil {
		if os.Getenv("AI_PROXY_REQUIRE_APISIX") != "" {
			fmt.Fprintln(os.Stderr, "real-APISIX lane required (AI_PROXY_REQUIRE_APISIX) but cannot run:", err)
			os.Exit(1)
		}
		skipWhy = err.Error()
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ai-proxy-lane-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	runnerBin = filepath.Join(dir, "ai-proxy-runner")
	build := exec.Command("go", "build", "-o", runnerBin, "../../cmd/ai-proxy-runner")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the runner:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test credentials and provider hosts, shared with the double's lane.
const (
	openAIKey    = seeds.OpenAIKey
	deepSeekKey  = seeds.DeepSeekKey
	azureKey     = seeds.AzureKey
	geminiKey    = seeds.GeminiKey
	localKey     = seeds.LocalKey
	openAIHost   = seeds.OpenAIHost
	deepSeekHost = seeds.DeepSeekHost
	azureHost    = seeds.AzureHost
	geminiHost   = seeds.GeminiHost
	vertexHost   = seeds.VertexHost
)

var secrets = seeds.Secrets

// lane is one real APISIX with the runner, the fake providers behind the
// test HTTPS proxy, and a fake local OpenAI-compatible server.
type lane struct {
	*realapisix.Instance
	proxy     *httpsproxy.Proxy
	token     *fakes.Token
	fakes     map[string]*fakes.Provider
	local     *fakes.Provider
	relayAddr string
	callLog   string
	// geminiNative answers generateContent paths at geminiHost; bedrock is
	// the Bedrock runtime.
	geminiNative *fakes.Provider
	bedrock      *fakes.Bedrock
}

type laneOptions struct {
	workers int
	env     []string
	user    uint32
}

func newLane(t *testing.T, opts ...func(*laneOptions)) *lane {
	t.Helper()
	if skipWhy != "" {
		t.Skip("real-APISIX lane skipped: " + skipWhy)
	}
	o := laneOptions{workers: 2}
	for _, f := range opts {
		f(&o)
	}
	l := &lane{fakes: map[string]*fakes.Provider{}}
	tok, err := fakes.StartToken()
	if err != nil {
		t.Fatal(err)
	}
	l.token = tok
	t.Cleanup(tok.Close)
	l.fakes[openAIHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "openai", Keys: map[string]string{"Authorization": "Bearer " + openAIKey}, ModelAlias: map[string]string{"gpt-4": "gpt-4-0613"}})
	l.fakes[deepSeekHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "deepseek", Keys: map[string]string{"Authorization": "Bearer " + deepSeekKey}})
	l.fakes[azureHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "azure", Keys: map[string]string{"api-key": azureKey}})
	l.fakes[geminiHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "gemini", Keys: map[string]string{"Authorization": "Bearer " + geminiKey}})
	l.fakes[vertexHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "vertex", TokenCheck: tok.Valid})
	l.fakes[seeds.AnthropicHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "anthropic", Keys: map[string]string{"x-api-key": seeds.AnthropicKey}})
	l.geminiNative = fakes.NewProvider(fakes.ProviderOptions{Flavor: "gemini-native", Keys: map[string]string{"x-goog-api-key": geminiKey}})
	t.Cleanup(l.geminiNative.Close)
	l.bedrock = fakes.NewBedrock(fakes.BedrockOptions{AccessKeyID: seeds.AWSAccessKeyID, SecretAccessKey: seeds.AWSSecretKey, Region: seeds.AWSRegion})
	t.Cleanup(l.bedrock.Close)
	for _, f := range l.fakes {
		t.Cleanup(f.Close)
	}
	l.local = fakes.StartProvider(fakes.ProviderOptions{Flavor: "openai", Keys: map[string]string{"Authorization": "Bearer " + localKey}})
	t.Cleanup(l.local.Close)
	proxy, err := httpsproxy.Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		switch {
		case host == geminiHost && strings.Contains(r.URL.Path, ":"):
			l.geminiNative.ServeHTTP(w, r)
			return
		case host == seeds.BedrockHost:
			l.bedrock.Handler().ServeHTTP(w, r)
			return
		}
		if f, ok := l.fakes[host]; ok {
			f.ServeHTTP(w, r)
			return
		}
		http.Error(w, "no fake for host "+r.Host, http.StatusMisdirectedRequest)
	}))
	if err != nil {
		t.Fatal(err)
	}
	l.proxy = proxy
	t.Cleanup(proxy.Close)

	// Files the runner (APISIX's user) reads and writes.
	dir, err := os.MkdirTemp("", "ai-proxy-lane-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755)
	if o.user != 0 {
		_ = os.Chown(dir, int(o.user), int(o.user)) // the runner writes its call log here
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := proxy.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	l.callLog = filepath.Join(dir, "calls.log")
	l.relayAddr, err = realapisix.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"AI_PROXY_RELAY_ADDR=" + l.relayAddr,
		"AI_PROXY_LOG_LEVEL=info",
		"AI_PROXY_ACCESS_LOG=" + l.callLog,
		"HTTPS_PROXY=" + proxy.URL(),
		"NO_PROXY=127.0.0.1",
		"SSL_CERT_FILE=" + caFile,
		"GCP_SERVICE_ACCOUNT=" + string(tok.SAJSON),
	}, o.env...)
	inst, err := realapisix.Start(realapisix.Options{
		ConfigFile: "../../conf/config.yaml",
		RunnerBin:  runnerBin,
		Env:        env,
		Workers:    o.workers,
		User:       o.user,
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Instance = inst
	t.Cleanup(func() {
		inst.Stop()
		l.checkNoSecrets(t)
	})
	if err := l.waitRunner(10 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, inst.ErrorLog())
	}
	l.putUpstream(t)
	return l
}

// waitRunner waits for the runner APISIX spawned to listen on the relay.
func (l *lane) waitRunner(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get("http://" + l.relayAddr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the runner APISIX starts never listened on %s: %v", l.relayAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// putUpstream creates the relay upstream from conf/upstream.json, pointed
// at this lane's relay address.
func (l *lane) putUpstream(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("../../conf/upstream.json")
	if err != nil {
		t.Fatal(err)
	}
	up := strings.Replace(string(b), `"127.0.0.1:9881"`, fmt.Sprintf("%q", l.relayAddr), 1)
	if up == string(b) {
		t.Fatal("conf/upstream.json does not name 127.0.0.1:9881")
	}
	if err := l.Put("upstreams", "ai-proxy-relay", []byte(up)); err != nil {
		t.Fatal(err)
	}
}

// putRoute creates a route from conf/routes/<name>.json with the test keys
// in place of its $VARIABLES, then waits until every worker serves it.
func (l *lane) putRoute(t *testing.T, name string, edit ...func(string) string) string {
	t.Helper()
	route, err := seeds.Route("../..", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range edit {
		route = f(route)
	}
	id := gjson.Get(route, "id").String()
	if id == "" {
		t.Fatalf("route %s has no id", name)
	}
	l.putRouteJSON(t, id, route)
	return id
}

// resetRoutes deletes every route: seed examples share URIs (several
// answer /anything), and APISIX picks any of the routes that match one.
func (l *lane) resetRoutes(t *testing.T) {
	t.Helper()
	code, b, err := l.Admin("GET", "/apisix/admin/routes", nil)
	if err != nil || code != 200 {
		t.Fatalf("listing routes: %d %v %s", code, err, b)
	}
	for _, r := range gjson.GetBytes(b, "list.#.value.id").Array() {
		if r.String() != "lane-sync" {
			if err := l.Delete("routes", r.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// putRouteJSON PUTs a route and waits until every worker has it.
func (l *lane) putRouteJSON(t *testing.T, id, route string) {
	t.Helper()
	if err := l.Put("routes", id, []byte(route)); err != nil {
		t.Fatal(err)
	}
	l.waitSynced(t)
}

// waitSynced waits until the workers have every change made so far:
// a marker route, written last, answers on each of them.
func (l *lane) waitSynced(t *testing.T) {
	t.Helper()
	mark := fmt.Sprint(time.Now().UnixNano())
	marker := fmt.Sprintf(`{"uri":"/lane-sync","plugins":{"serverless-pre-function":{"phase":"rewrite","functions":["return function(conf, ctx) ngx.say('%s'); ngx.exit(200) end"]}}}`, mark)
	if err := l.Put("routes", "lane-sync", []byte(marker)); err != nil {
		t.Fatal(err)
	}
	err := l.Synced(10*time.Second, func() bool {
		resp, err := http.Get(l.DataURL + "/lane-sync")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.TrimSpace(string(b)) == mark
	})
	if err != nil {
		t.Fatal(err)
	}
}

// post sends a client request to APISIX's data plane.
func (l *lane) post(t *testing.T, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", l.DataURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func (l *lane) lastRequest(t *testing.T, host string) fakes.Request {
	t.Helper()
	r, ok := l.fakes[host].Last()
	if !ok {
		t.Fatalf("%s received nothing", host)
	}
	return r
}

// accessEntry waits for the access-log line of the last request whose
// field has the given value (nginx writes it when the request ends).
func (l *lane) accessEntry(t *testing.T, field, value string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		log, err := l.AccessLog()
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for i := len(log) - 1; i >= 0; i-- {
			if log[i][field] == value {
				return log[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access-log line with %s=%q in %v", field, value, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// calls reads the runner's call log (buffered: flushed every second).
func (l *lane) calls(t *testing.T, want int) []gjson.Result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(l.callLog)
		var out []gjson.Result
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && gjson.Valid(line) {
				out = append(out, gjson.Parse(line))
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *lane) callByID(t *testing.T, id string) gjson.Result {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, c := range l.calls(t, 0) {
			if c.Get("call_id").String() == id {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call-log line with call_id %q", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *lane) checkNoSecrets(t *testing.T) {
	t.Helper()
	logs := l.ErrorLog()
	b, _ := os.ReadFile(l.callLog)
	logs += string(b)
	a, _ := os.ReadFile(l.AccessLogPath())
	logs += string(a)
	for _, s := range append(secrets, l.token.Issued()...) {
		if strings.Contains(logs, s) {
			t.Errorf("a credential appears in APISIX's or the runner's logs: %q", s)
		}
	}
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Error("the service-account key appears in the logs")
	}
}

// streamLines reads an SSE answer line by line as it arrives.
type streamLines struct {
	lines chan string
	done  chan struct{}
}

func readStream(body io.Reader) *streamLines {
	s := &streamLines{lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.lines)
		br := bufio.NewReader(body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				s.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

// next returns the next non-empty line, or fails after wait.
func (s *streamLines) next(t *testing.T, wait time.Duration) string {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.TrimSpace(line) != "" {
				return line
			}
		case <-timer.C:
			t.Fatalf("no stream line within %v", wait)
		}
	}
}

func (s *streamLines) rest() string {
	var b strings.Builder
	for line := range s.lines {
		b.WriteString(line)
	}
	return b.String()
}

// Package e2e runs the real ai-proxy-runner binary under the APISIX test
// double: routes are configured through the double's admin API exactly as
// an operator configures stock APISIX, requests go through the
// ext-plugin-pre-req RPC and the relay, and fake providers behind an
// HTTPS proxy with a test CA check what arrives at the providers' real hosts.
package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/apisix"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/httpsproxy"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/seeds"
)

// runnerBin is the binary under test, built once for the suite.
var runnerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ai-proxy-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	runnerBin = filepath.Join(dir, "ai-proxy-runner")
	build := exec.Command("go", "build", "-race", "-o", runnerBin, "../../cmd/ai-proxy-runner")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the runner:", err)
		os.Exit(1)
	}
	// The race detector sleeps a second at exit by default; the suite runs
	// the binary many times.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test credentials and provider hosts, shared with the real-APISIX lane.
const (
	openAIKey    = seeds.OpenAIKey
	deepSeekKey  = seeds.DeepSeekKey
	azureKey     = seeds.AzureKey
	geminiKey    = seeds.GeminiKey
	openAIHost   = seeds.OpenAIHost
	deepSeekHost = seeds.DeepSeekHost
	azureHost    = seeds.AzureHost
	geminiHost   = seeds.GeminiHost
	vertexHost   = seeds.VertexHost
)

var secrets = seeds.Secrets

// env is one APISIX (the double) with its runner, and the fake providers.
type env struct {
	gw        *apisix.Gateway
	data      *httptest.Server // APISIX's data plane (port 9080)
	relayAddr string
	proxy     *httpsproxy.Proxy
	token     *fakes.Token
	saJSON    []byte
	fakes     map[string]*fakes.Provider // by host
	// geminiNative answers generateContent paths at geminiHost (the
	// OpenAI-surface fake takes the rest); bedrock is the Bedrock runtime.
	geminiNative *fakes.Provider
	bedrock      *fakes.Bedrock
	output       *syncBuffer  // runner stdout+stderr (APISIX error.log)
	posts        atomic.Int64 // data-plane requests sent
	accessLog    string       // the runner's call log
}

type envOptions struct {
	extraEnv []string
	grace    time.Duration
	saEnv    bool // give the runner the service account in GCP_SERVICE_ACCOUNT
	args     []string
}

func withArgs(args ...string) func(*envOptions) {
	return func(o *envOptions) { o.args = append(o.args, args...) }
}

func withServiceAccountEnv(o *envOptions) { o.saEnv = true }

func newEnv(t *testing.T, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{grace: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	e := &env{output: &syncBuffer{}, fakes: map[string]*fakes.Provider{}}
	dir := t.TempDir()

	// A service account whose token_uri is the fake token endpoint.
	tok, err := fakes.StartToken()
	if err != nil {
		t.Fatal(err)
	}
	e.token, e.saJSON = tok, tok.SAJSON

	e.fakes[openAIHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "openai", Keys: map[string]string{"Authorization": "Bearer " + openAIKey}, ModelAlias: map[string]string{"gpt-4": "gpt-4-0613"}})
	e.fakes[deepSeekHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "deepseek", Keys: map[string]string{"Authorization": "Bearer " + deepSeekKey}})
	e.fakes[azureHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "azure", Keys: map[string]string{"api-key": azureKey}})
	e.fakes[geminiHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "gemini", Keys: map[string]string{"Authorization": "Bearer " + geminiKey}})
	e.fakes[vertexHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "vertex", TokenCheck: e.token.Valid})
	e.fakes[seeds.AnthropicHost] = fakes.NewProvider(fakes.ProviderOptions{Flavor: "anthropic", Keys: map[string]string{"x-api-key": seeds.AnthropicKey}})
	e.geminiNative = fakes.NewProvider(fakes.ProviderOptions{Flavor: "gemini-native", Keys: map[string]string{"x-goog-api-key": geminiKey}})
	e.bedrock = fakes.NewBedrock(fakes.BedrockOptions{AccessKeyID: seeds.AWSAccessKeyID, SecretAccessKey: seeds.AWSSecretKey, Region: seeds.AWSRegion})
	proxy, err := httpsproxy.Start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		switch {
		case host == geminiHost && strings.Contains(r.URL.Path, ":"):
			e.geminiNative.ServeHTTP(w, r)
			return
		case host == seeds.BedrockHost:
			e.bedrock.Handler().ServeHTTP(w, r)
			return
		}
		if f, ok := e.fakes[host]; ok {
			f.ServeHTTP(w, r)
			return
		}
		http.Error(w, "no fake for host "+r.Host, http.StatusMisdirectedRequest)
	}))
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = proxy
	caFile := filepath.Join(dir, "ca.pem")
	if err := proxy.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}

	e.relayAddr = freeAddr(t)
	e.accessLog = filepath.Join(dir, "calls.log")
	env := append([]string{
		"HTTPS_PROXY=" + proxy.URL(),
		"SSL_CERT_FILE=" + caFile,
		"GORACE=atexit_sleep_ms=0 halt_on_error=1",
	}, o.extraEnv...)
	if o.saEnv {
		env = append(env, "GCP_SERVICE_ACCOUNT="+string(e.saJSON))
	}
	gw, err := apisix.Start(apisix.Options{
		// --foreground: the double watches the process it started, as
		// APISIX does; the supervisor that outlives APISIX's SIGKILL is
		// proven on real APISIX (t/realapisix).
		RunnerCmd: append([]string{runnerBin, "run", "--foreground", "--relay-addr", e.relayAddr, "--access-log", e.accessLog,
			"--log-level", "info", "--shutdown-grace", o.grace.String()}, o.args...),
		SocketPath:   filepath.Join(dir, "apisix.sock"),
		Env:          env,
		RunnerOutput: e.output,
		Workers:      2,
		StopTimeout:  o.grace + 5*time.Second,
		RespawnDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("starting APISIX double: %v\nrunner output:\n%s", err, e.output.String())
	}
	e.gw = gw
	e.data = httptest.NewServer(gw.Handler())
	e.admin(t, "PUT", "/apisix/admin/upstreams/ai-proxy-relay", fmt.Sprintf(`{"nodes":{%q:1},"type":"roundrobin"}`, e.relayAddr))

	t.Cleanup(func() {
		e.data.Close()
		if err := gw.Close(); err != nil {
			t.Errorf("closing the double: %v", err)
		}
		proxy.Close()
		e.token.Close()
		for _, f := range e.fakes {
			f.Close()
		}
		e.geminiNative.Close()
		e.bedrock.Close()
		e.checkNoSecrets(t)
	})
	return e
}

// checkNoSecrets fails the test if a credential reached any log line.
func (e *env) checkNoSecrets(t *testing.T) {
	t.Helper()
	logs := e.output.String()
	if b, err := os.ReadFile(e.accessLog); err == nil {
		logs += string(b)
	}
	for _, s := range append(secrets, e.issuedTokens()...) {
		if strings.Contains(logs, s) {
			t.Errorf("a credential appears in the runner's logs: %q", s)
		}
	}
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Error("the service-account key appears in the runner's logs")
	}
}

func (e *env) issuedTokens() []string { return e.token.Issued() }

// admin calls the double's Admin API like `curl http://127.0.0.1:9180/...`.
func (e *env) admin(t *testing.T, method, path, body string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("X-API-KEY", "edd1c9f034335f136f87ad84b625c8f1")
	e.gw.AdminHandler().ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		t.Fatalf("admin %s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
}

// putRoute loads a converted route from conf/routes with the test keys in
// place of its $VARIABLES, and PUTs it through the admin API.
func (e *env) putRoute(t *testing.T, name string, edit ...func(string) string) string {
	t.Helper()
	route, err := seeds.Route("../..", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range edit {
		route = f(route)
	}
	e.admin(t, "PUT", "/apisix/admin/routes", route)
	return route
}

// readSeed reads a route as the docs write it, from conf/routes/seed.
func readSeed(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../conf/routes/seed", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runRoute runs `ai-proxy-runner route` and returns its combined output.
func runRoute(route string) (string, error) {
	cmd := exec.Command(runnerBin, "route")
	cmd.Stdin = strings.NewReader(route)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// convertRoute runs `ai-proxy-runner route` on a seed-style route.
func convertRoute(t *testing.T, route string) string {
	t.Helper()
	cmd := exec.Command(runnerBin, "route")
	cmd.Stdin = strings.NewReader(route)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ai-proxy-runner route: %v: %s", err, stderr.String())
	}
	return string(out)
}

// post sends a client request to APISIX's data plane.
func (e *env) post(t *testing.T, path, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", e.data.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	e.posts.Add(1)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v\nrunner output:\n%s", path, err, e.output.String())
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lastRequest is what the fake at host received last.
func (e *env) lastRequest(t *testing.T, host string) fakes.Request {
	t.Helper()
	r, ok := e.fakes[host].Last()
	if !ok {
		t.Fatalf("%s received nothing", host)
	}
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects the runner's output from the double's copier.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lastAccess is APISIX's access-log entry of the last request. The entry
// is written when the double's handler returns, which may be just after
// the client has read the whole answer.
func (e *env) lastAccess(t *testing.T) apisix.AccessEntry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := e.gw.AccessLog()
		if int64(len(log)) >= e.posts.Load() {
			return log[len(log)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log has %d entries for %d requests", len(log), e.posts.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// callLog is the runner's call log so far, one JSON object per line.
func (e *env) callLog(t *testing.T) []gjson.Result {
	t.Helper()
	b, err := os.ReadFile(e.accessLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []gjson.Result
	for _, line := range strings.Split(string(b), "\n") {
		if gjson.Valid(line) && line != "" {
			out = append(out, gjson.Parse(line))
		}
	}
	return out
}

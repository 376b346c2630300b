// Command quickstart shows the main job on one machine, with no Docker and
// no API key: the ai-proxy-runner binary under real APISIX when one is
// installed (APISIX_HOME, default /usr/local/apisix: etcd, `apisix start`
// with conf/config.yaml merged in, APISIX spawning the runner), else under
// the APISIX test double; data plane 127.0.0.1:9080, Admin API
// 127.0.0.1:9180, the relay upstream and the seed's OpenAI route loaded
// from conf/, and a mock OpenAI-compatible provider standing in for
// api.openai.com.
//
//	make run   # then, in another terminal, the seed's curl
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/apisix"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
	"github.com/ai-proxy-runner/ai-proxy-runner/t/realapisix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	runner := flag.String("runner", "bin/ai-proxy-runner", "the runner binary (make build)")
	dataAddr := flag.String("listen", "127.0.0.1:9080", "APISIX data plane")
	adminAddr := flag.String("admin", "127.0.0.1:9180", "APISIX Admin API")
	relayAddr := flag.String("relay-addr", "127.0.0.1:9881", "the runner's relay")
	mockAddr := flag.String("mock", "127.0.0.1:18080", "the mock OpenAI provider")
	double := flag.Bool("double", false, "use the APISIX test double even when real APISIX is installed")
	flag.Parse()

	bin, err := filepath.Abs(*runner)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s not found: run `make build` first (make run does)", bin)
	}

	// The mock answers like OpenAI and accepts the key the route carries.
	mock := fakes.NewProvider(fakes.ProviderOptions{
		Flavor:     "openai",
		Keys:       map[string]string{"Authorization": "Bearer sk-quickstart"},
		ModelAlias: map[string]string{"gpt-4": "gpt-4-0613"},
	})
	defer mock.Close()
	mockSrv, err := listen(*mockAddr, mock)
	if err != nil {
		return err
	}
	defer mockSrv.Close()

	route, err := os.ReadFile("conf/routes/openai.json")
	if err != nil {
		return err
	}
	// The seed's OpenAI route, with the mock in place of api.openai.com.
	r := strings.ReplaceAll(string(route), "$OPENAI_API_KEY", "sk-quickstart")
	r = strings.Replace(r, `\"options\"`, `\"override\":{\"endpoint\":\"http://`+*mockAddr+`/v1/chat/completions\"},\"options\"`, 1)

	if !*double {
		if err := realapisix.Available(realapisix.Home()); err != nil {
			fmt.Printf("real APISIX not available (%v): using the APISIX test double\n", err)
		} else {
			return runReal(bin, r, *dataAddr, *adminAddr, *relayAddr, *mockAddr)
		}
	}

	dir, err := os.MkdirTemp("", "ai-proxy-quickstart")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	gw, err := apisix.Start(apisix.Options{
		RunnerCmd:    []string{bin, "run", "--foreground", "--relay-addr", *relayAddr, "--log-level", "info"},
		SocketPath:   filepath.Join(dir, "apisix.sock"),
		RunnerOutput: prefixWriter{"runner | "},
		Logf:         func(f string, a ...any) { fmt.Printf("apisix | "+f+"\n", a...) },
		StopTimeout:  5 * time.Second,
	})
	if err != nil {
		return err
	}
	defer gw.Close()

	upstream := fmt.Sprintf(`{"nodes":{%q:1},"type":"roundrobin"}`, *relayAddr)
	if err := gw.PutUpstream("ai-proxy-relay", []byte(upstream)); err != nil {
		return err
	}
	if err := gw.PutRoute("ai-proxy-route", []byte(r)); err != nil {
		return err
	}

	format, err := apisix.LoadAccessLogFormat("conf/config.yaml")
	if err != nil {
		return err
	}
	data, err := listen(*dataAddr, withAccessLog(gw, format))
	if err != nil {
		return err
	}
	defer data.Close()
	admin, err := listen(*adminAddr, gw.AdminHandler())
	if err != nil {
		return err
	}
	defer admin.Close()

	printReady("APISIX test double", *dataAddr, *adminAddr, adminKey, *relayAddr, *mockAddr)
	waitInterrupt()
	return nil
}

// adminKey is the example key of APISIX's docs, as the packages ship it.
const adminKey = "edd1c9f034335f136f87ad84b625c8f1"

func printReady(what, dataAddr, adminAddr, key, relayAddr, mockAddr string) {
	fmt.Printf(`
ai-proxy quickstart is up:
  %s
  data plane            http://%s
  Admin API             http://%s  (X-API-KEY: %s)
  runner relay          http://%s
  mock OpenAI           http://%s

Try the seed's request:

  curl "http://%s/anything" -X POST \
    -H "Content-Type: application/json" -H "Host: api.openai.com" \
    -d '{"messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}'

and with "stream": true for server-sent events. Ctrl-C stops everything.
`, what, dataAddr, adminAddr, key, relayAddr, mockAddr, dataAddr)
}

func waitInterrupt() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Println("stopping")
}

// runReal starts stock APISIX as the README's production steps do: the
// merged conf/config.yaml, APISIX spawning the runner, the upstream and the
// route through the Admin API; it shows APISIX's access log and the
// runner's call log as they grow.
func runReal(bin, route, dataAddr, adminAddr, relayAddr, mockAddr string) error {
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	dir, err := os.MkdirTemp("", "ai-proxy-quickstart")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	calls := filepath.Join(dir, "calls.log")
	inst, err := realapisix.Start(realapisix.Options{
		ConfigFile: "conf/config.yaml",
		RunnerBin:  bin,
		Env:        []string{"AI_PROXY_RELAY_ADDR=" + relayAddr, "AI_PROXY_ACCESS_LOG=" + calls, "NO_PROXY=127.0.0.1"},
		DataPort:   port(dataAddr),
		AdminPort:  port(adminAddr),
		AdminKey:   adminKey,
		Logf:       func(f string, a ...any) { fmt.Printf("apisix | "+f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer inst.Stop()
	up, err := os.ReadFile("conf/upstream.json")
	if err != nil {
		return err
	}
	upstream := strings.Replace(string(up), `"127.0.0.1:9881"`, fmt.Sprintf("%q", relayAddr), 1)
	if err := inst.Put("upstreams", "ai-proxy-relay", []byte(upstream)); err != nil {
		return err
	}
	if err := inst.Put("routes", "ai-proxy-route", []byte(route)); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go follow(inst.AccessLogPath(), "access | ", stop)
	go follow(calls, "runner | ", stop)
	printReady(fmt.Sprintf("APISIX %s (real, %s; home %s)", inst.Version, inst.Install, inst.Home), dataAddr, adminAddr, adminKey, relayAddr, mockAddr)
	waitInterrupt()
	return nil
}

// follow prints the lines appended to a file (nginx flushes its access log
// every few seconds).
func follow(path, prefix string, stop <-chan struct{}) {
	var off int64
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if fi, err := f.Stat(); err == nil && fi.Size() > off {
			b := make([]byte, fi.Size()-off)
			n, _ := f.ReadAt(b, off)
			off += int64(n)
			for _, line := range strings.SplitAfter(string(b[:n]), "\n") {
				if strings.TrimSpace(line) != "" {
					fmt.Print(prefix + line)
				}
			}
		}
		f.Close()
	}
}

func listen(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s is taken (%w); is another quickstart running?", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "quickstart:", err)
		}
	}()
	return srv, nil
}

// withAccessLog prints each request as nginx would with the
// access_log_format of conf/config.yaml.
func withAccessLog(gw *apisix.Gateway, format *apisix.AccessLogFormat) http.Handler {
	h := gw.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		log := gw.AccessLog()
		if len(log) == 0 {
			return
		}
		fmt.Printf("access | %s\n", format.Line(log[len(log)-1]))
	})
}

// prefixWriter labels the runner's output lines.
type prefixWriter struct{ prefix string }

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Print(p.prefix + line)
		}
	}
	return len(b), nil
}

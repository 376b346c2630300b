// Command bench measures what the runner adds to a call: every scenario
// runs the same load directly against a mock provider, through the APISIX
// test double alone (a plain upstream), and through the double with the
// ai-proxy runner and its relay, all in one run on loopback. It writes a
// Markdown report (make bench → docs/benchmarks.md).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/apisix"
)

func main() {
	runner := flag.String("runner", "bin/ai-proxy-runner", "the runner binary")
	out := flag.String("out", "docs/benchmarks.md", "report file")
	dur := flag.Duration("duration", 4*time.Second, "length of each measured load")
	roundsFlag = flag.Int("rounds", 4, "whole-answer loads alternate direct, double and runner in this many rounds")
	streams := flag.Int("streams", 1000, "concurrent open streams for the memory figure")
	metrics := flag.String("runner-pprof", "", "give the runner --pprof-addr (loopback, for /debug/pprof while the bench runs)")
	only := flag.String("only", "", "run only the whole-answer scenarios whose name contains this, \"streams\" for the stream section (skips the memory figure), \"real\" for the real-APISIX section alone, \"real:NAME\" for its scenarios whose name contains NAME (\"real:streams\" for its streams)")
	runnerEnv := flag.String("runner-env", "", "extra K=V for the runner's environment, comma-separated (e.g. GOGC=400)")
	flag.BoolVar(&relayBench, "relay-bench", true, "append the relay's go test benchmarks (-benchmem) to the report")
	flag.BoolVar(&realAPISIX, "real", true, "also measure on real APISIX (APISIX_HOME) when it is installed: proxy, its Lua ai-proxy and the runner side by side")
	flag.StringVar(&profileDir, "profile", "", "write CPU profiles of the runner and of this harness during each runner load into this folder")
	flag.Parse()
	if *metrics == "" && profileDir != "" {
		*metrics = freeAddr()
	}
	if *metrics != "" {
		extraArgs = append(extraArgs, "--pprof-addr", *metrics)
		metricsAddr = *metrics
	}
	onlyScenario = *only
	if *runnerEnv != "" {
		extraEnv = strings.Split(*runnerEnv, ",")
	}
	// This process plays nginx, which has no garbage collector: collect
	// rarely so its pauses do not land in the runner's figures.
	debug.SetGCPercent(800)
	if err := run(*runner, *out, *dur, *streams); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// mock is a provider with a fixed answer, latency and stream shape.
type mock struct {
	latency  atomic.Int64 // ns before answering
	jitter   atomic.Int64 // ns: latency varies uniformly by up to ± this
	answer   atomic.Pointer[[]byte]
	events   atomic.Int64  // >0: stream this many events
	interval atomic.Int64  // ns between events
	hold     chan struct{} // streams wait here after their first event when holding
	holding  atomic.Bool
	// unbuffered streams carry X-Accel-Buffering: no, as the relay's do, so
	// that the double's column is a fair baseline for the runner's.
	unbuffered atomic.Bool
}

func (m *mock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if d := time.Duration(m.latency.Load()); d > 0 {
		if j := m.jitter.Load(); j > 0 {
			d += time.Duration(rand.Int64N(2*j+1) - j)
		}
		time.Sleep(d)
	}
	n := int(m.events.Load())
	if n == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*m.answer.Load())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	if m.unbuffered.Load() {
		w.Header().Set("X-Accel-Buffering", "no")
	}
	rc := http.NewResponseController(w)
	for i := range n {
		// sent_ns lets the client measure each event's delay on the way.
		fmt.Fprintf(w, "data: {\"model\":\"gpt-4-0613\",\"sent_ns\":%d,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}]}\n\n", time.Now().UnixNano(), i)
		rc.Flush()
		if i == 0 && m.holding.Load() {
			select {
			case <-m.hold:
			case <-r.Context().Done():
				return
			}
		}
		if d := time.Duration(m.interval.Load()); d > 0 {
			time.Sleep(d)
		}
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

func chatAnswer(size int) []byte {
	return fmt.Appendf(nil, `{"id":"c","object":"chat.completion","model":"gpt-4-0613","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`, strings.Repeat("x", max(size-200, 1)))
}

func embeddingAnswer(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[`)
	for i := 0; b.Len() < size-100; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("-0.0241838414222")
	}
	b.WriteString(`]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}`)
	return []byte(b.String())
}

type setup struct {
	mock                     *mock
	direct, plain, through   string // base URLs
	gw                       *apisix.Gateway
	client                   *http.Client
	chatBody, embeddingsBody []byte
}

func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

// extraArgs and extraEnv go to the runner (e.g. --pprof-addr to profile
// it under load); onlyScenario narrows a run to some scenarios.
var (
	extraArgs  []string
	realAPISIX = true
	// projectConf is the project's conf/ (make bench runs from the root).
	projectConf  = "conf"
	extraEnv     []string
	onlyScenario string
	profileDir   string
	relayBench   bool
	roundsFlag   *int
	metricsAddr  string
)

// profiled runs load while the runner (through its pprof endpoint) and
// this process record CPU profiles named after the scenario.
func profiled(name string, dur time.Duration, load func()) {
	if profileDir == "" {
		load()
		return
	}
	slug := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	os.MkdirAll(profileDir, 0o755)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		secs := max(int(dur/time.Second)-1, 1)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", metricsAddr, secs))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: runner profile:", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(profileDir, slug+".runner.pprof"))
		if err != nil {
			return
		}
		io.Copy(f, resp.Body)
		f.Close()
	}()
	if f, err := os.Create(filepath.Join(profileDir, slug+".harness.pprof")); err == nil {
		pprof.StartCPUProfile(f)
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	load()
	wg.Wait()
}

func run(runnerBin, out string, dur time.Duration, streams int) error {
	bin, err := filepath.Abs(runnerBin)
	if err != nil {
		return err
	}
	m := &mock{hold: make(chan struct{})}
	a := chatAnswer(1 << 10)
	m.answer.Store(&a)
	mockURL, stopMock, err := listen(m)
	if err != nil {
		return err
	}
	defer stopMock()
	if onlyScenario == "real" || strings.HasPrefix(onlyScenario, "real:") {
		sec, err := realSection(bin, m, mockURL, dur, streams)
		if err != nil {
			return err
		}
		fmt.Print(sec)
		return nil
	}

	dir, _ := os.MkdirTemp("", "ai-proxy-bench")
	defer os.RemoveAll(dir)
	relay := freeAddr()
	gw, err := apisix.Start(apisix.Options{
		RunnerCmd:   append([]string{bin, "run", "--foreground", "--relay-addr", relay, "--access-log", "/dev/null"}, extraArgs...),
		SocketPath:  filepath.Join(dir, "apisix.sock"),
		Env:         extraEnv,
		Workers:     2,
		StopTimeout: 5 * time.Second,
		AccessLog:   rpcTimes.add,
	})
	if err != nil {
		return err
	}
	defer gw.Close()
	mockHost := strings.TrimPrefix(mockURL, "http://")
	gw.PutUpstream("relay", fmt.Appendf(nil, `{"nodes":{%q:1}}`, relay))
	gw.PutUpstream("mock", fmt.Appendf(nil, `{"nodes":{%q:1}}`, mockHost))
	for _, api := range []string{"chat/completions", "embeddings"} {
		conf := fmt.Sprintf(`{"provider":"openai","auth":{"header":{"Authorization":"Bearer k"}},"options":{"model":"gpt-4"},"override":{"endpoint":"%s/v1/%s"},"timeout":60000}`, mockURL, api)
		value := strconv.Quote(conf)
		gw.PutRoute("ai-"+api, fmt.Appendf(nil, `{"uri":"/ai/v1/%s","plugins":{"ext-plugin-pre-req":{"conf":[{"name":"ai-proxy","value":%s}]}},"upstream_id":"relay"}`, api, value))
	}
	gw.PutRoute("plain", []byte(`{"uri":"/v1/*","upstream_id":"mock"}`))
	gwURL, stopGW, err := listen(gw.Handler())
	if err != nil {
		return err
	}
	defer stopGW()

	s := &setup{
		mock: m, direct: mockURL, plain: gwURL, through: gwURL + "/ai", gw: gw,
		client:         &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2048, MaxConnsPerHost: 0}},
		chatBody:       []byte(`{"model":"gpt-4","messages":[{"role":"system","content":"You are a mathematician"},{"role":"user","content":"What is 1+1?"}]}`),
		embeddingsBody: []byte(`{"model":"text-embedding-3-small","input":"hello world"}`),
	}
	var report strings.Builder
	fmt.Fprintf(&report, "# Benchmarks\n\nGenerated by `make bench` (`go run ./t/bench`) on %s, %d cores, %s, %s/%s; each load runs %s. ",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, dur)
	fmt.Fprintf(&report, "Everything runs on this one machine over loopback: the load generator, the mock provider and the APISIX test double share the process that runs this harness; the runner is its own process, started by the double as APISIX starts it.\n\n")
	fmt.Fprintf(&report, "Columns: **direct** = client → mock provider; **double** = client → APISIX double → mock (a plain upstream, no ext-plugin); **runner** = client → APISIX double → ext-plugin RPC to the runner → relay → mock. *Added by the runner* = runner − double, the cost a real APISIX would see from this project; runner − direct also counts the double, which stands in for nginx and is slower than it.\n\n")

	pid := gw.RunnerPID()
	type scenario struct {
		name        string
		answer      []byte
		path        string
		body        []byte
		concurrency int
		rate        int // requests/s, open loop; 0 = closed loop
		latency     time.Duration
		jitter      time.Duration
	}
	scenarios := []scenario{
		{"chat, 1 KB answer, 16 clients", chatAnswer(1 << 10), "/v1/chat/completions", s.chatBody, 16, 0, 0, 0},
		{"chat, 64 KB answer, 16 clients", chatAnswer(64 << 10), "/v1/chat/completions", s.chatBody, 16, 0, 0, 0},
		{"embeddings, 1 MB answer, 4 clients", embeddingAnswer(1 << 20), "/v1/embeddings", s.embeddingsBody, 4, 0, 0, 0},
		{"chat, 1 KB answer, 1,000 requests/s", chatAnswer(1 << 10), "/v1/chat/completions", s.chatBody, 0, 1000, 0, 0},
		// Real providers do not answer in a fixed time; without jitter the
		// 64 clients would start together and come back together every
		// 50 ms, measuring one burst of 64 over and over instead of a load.
		{"chat, 64 clients, provider latency 50 ± 5 ms", chatAnswer(1 << 10), "/v1/chat/completions", s.chatBody, 64, 0, 50 * time.Millisecond, 5 * time.Millisecond},
	}
	fmt.Fprintf(&report, "## Whole answers\n\n| scenario | | requests/s | p50 ms | p99 ms | errors |\n|---|---|---:|---:|---:|---:|\n")
	var notes []string
	for _, sc := range scenarios {
		if !strings.Contains(sc.name, onlyScenario) {
			continue
		}
		m.answer.Store(&sc.answer)
		m.latency.Store(int64(sc.latency))
		m.jitter.Store(int64(sc.jitter))
		m.events.Store(0)
		// The three columns take turns in short rounds, so a slow moment of
		// the machine hits all of them alike.
		var res [3]result
		var rpc result
		var runnerCPU time.Duration
		rounds := *roundsFlag
		if profileDir != "" {
			rounds = 1 // one profile covers one whole runner load
		}
		for range rounds {
			for i, base := range []string{s.direct, s.plain, s.through} {
				rpcTimes.take()
				cpu0 := procCPU(pid)
				var r result
				load := func() { r = s.load(base+sc.path, sc.body, sc.concurrency, sc.rate, dur/time.Duration(rounds)) }
				if i == 2 {
					profiled(sc.name, dur, load)
					runnerCPU += procCPU(pid) - cpu0
					rpc.add(rpcTimes.take())
				} else {
					load()
				}
				res[i].add(r)
			}
		}
		if res[2].n > 0 {
			res[2].cpuPerReq = runnerCPU / time.Duration(res[2].n)
		}
		for i, label := range []string{"direct", "double", "runner"} {
			r := res[i]
			name := ""
			if i == 0 {
				name = sc.name
			}
			fmt.Fprintf(&report, "| %s | %s | %.0f | %.2f | %.2f | %d |\n", name, label, r.rps(), ms(r.p(50)), ms(r.p(99)), r.errors)
		}
		added50, added99 := res[2].p(50)-res[1].p(50), res[2].p(99)-res[1].p(99)
		vsDirect, vsDouble := res[2].rps()/res[0].rps(), res[2].rps()/res[1].rps()
		switch {
		case sc.rate == 1000:
			targets = append(targets, target{"added p99 at 1,000 requests/s, non-streaming chat", "≤ 2 ms (stretch < 1 ms)", fmt.Sprintf("%.2f ms", ms(added99)), added99 <= 2*time.Millisecond})
		case sc.latency > 0:
			targets = append(targets, target{"throughput at 64 clients, 50 ms provider, vs direct", "≥ 95%", fmt.Sprintf("%.1f%% (%.1f%% vs double)", 100*vsDirect, 100*vsDouble), vsDirect >= 0.95})
		}
		notes = append(notes, fmt.Sprintf("| %s | %.2f | %.2f | %.2f / %.2f | %.0f%% | %.0f%% | %s |", sc.name, ms(added50), ms(added99), ms(rpc.p(50)), ms(rpc.p(99)),
			100*vsDirect, 100*vsDouble, res[2].cpuPerReq.Round(time.Microsecond)))
	}
	fmt.Fprintf(&report, "\n### Added by the runner\n\n| scenario | added p50 ms | added p99 ms | of which ext-plugin RPC p50 / p99 ms | throughput vs direct | throughput vs double | runner CPU per request |\n|---|---:|---:|---:|---:|---:|---:|\n%s\n", strings.Join(notes, "\n"))
	if onlyScenario != "" && onlyScenario != "streams" {
		fmt.Print(report.String())
		return nil
	}

	// Streams: time to first event and to the end, 200 events 1 ms apart.
	m.latency.Store(0)
	m.jitter.Store(0)
	m.events.Store(200)
	m.interval.Store(int64(time.Millisecond))
	fmt.Fprintf(&report, "\n## Streams (200 events, 1 ms apart, 8 clients)\n\n"+
		"*Event delay* is, for every event, its arrival at the client minus the moment the mock wrote it: events held back or sent in batches show there.\n\n"+
		"| | streams/s | TTFT p50 ms | TTFT p99 ms | event delay p50 ms | event delay p99 ms | whole stream p50 ms | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var ttft, delay [4]result
	columns := []struct {
		label, base string
		unbuffered  bool
	}{
		{"direct", s.direct, false},
		{"double, proxy buffering on", s.plain, false},
		{"double, `X-Accel-Buffering: no`", s.plain, true},
		{"runner", s.through, false},
	}
	for i, col := range columns {
		m.unbuffered.Store(col.unbuffered)
		body := []byte(`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stream":true}`)
		r := s.streamLoad(col.base+"/v1/chat/completions", body, 8, dur)
		ttft[i], delay[i] = r.first, r.events
		fmt.Fprintf(&report, "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %d |\n", col.label, r.whole.rps(), ms(r.first.p(50)), ms(r.first.p(99)), ms(r.events.p(50)), ms(r.events.p(99)), ms(r.whole.p(50)), r.whole.errors)
	}
	m.unbuffered.Store(false)
	// Added by the runner: its row minus the double's without buffering.
	ttft50, ttft99 := ttft[3].p(50)-ttft[2].p(50), ttft[3].p(99)-ttft[2].p(99)
	delay50, delay99 := delay[3].p(50)-delay[2].p(50), delay[3].p(99)-delay[2].p(99)
	targets = append(targets,
		target{"added TTFT, p50 (p99)", "< 1 ms", fmt.Sprintf("%.2f ms (%.2f ms)", ms(ttft50), ms(ttft99)), ttft50 < time.Millisecond},
		target{"added delay per stream event, p50 (p99): no coalescing", "< 1 ms", fmt.Sprintf("%.2f ms (%.2f ms)", ms(delay50), ms(delay99)), delay99 < time.Millisecond})
	if onlyScenario == "streams" {
		fmt.Print(report.String())
		return nil
	}
	fmt.Fprintf(&report, "\nThe relay sends `X-Accel-Buffering: no`, which turns the double's (and nginx's) proxy buffering off for its answers; the second row shows what a stream looks like without it. "+
		"**Added TTFT by the runner** (runner − double without buffering): p50 %.3f ms, p99 %.3f ms; added event delay: p50 %.3f ms, p99 %.3f ms. Runner − direct, which also counts the double: TTFT p50 %.3f ms, p99 %.3f ms.\n",
		ms(ttft50), ms(ttft99), ms(delay50), ms(delay99),
		ms(ttft[3].p(50)-ttft[0].p(50)), ms(ttft[3].p(99)-ttft[0].p(99)))

	// Memory: open streams held after their first event.
	m.holding.Store(true)
	m.events.Store(2)
	runtime.GC()
	base := procRSS(pid)
	held := s.holdStreams(s.through+"/v1/chat/completions", streams)
	during := procRSS(pid)
	close(m.hold)
	held()
	per := int64(0)
	if streams > 0 {
		per = (during - base) / int64(streams)
	}
	fmt.Fprintf(&report, "\n## Memory\n\nRunner RSS with no stream open: %.1f MiB; with %d streams open through the relay: %.1f MiB; **%.1f KiB per open stream**.\n",
		float64(base)/(1<<20), streams, float64(during)/(1<<20), float64(per)/1024)

	targets = append(targets, target{"runner memory per open stream", "< 64 KiB", fmt.Sprintf("%.1f KiB", float64(per)/1024), per < 64<<10})
	// The targets go first in the report, where a reader looks.
	var tsec strings.Builder
	fmt.Fprintf(&tsec, "## Targets\n\n| target | goal | this run | met |\n|---|---|---:|---|\n")
	for _, t := range targets {
		met := "yes"
		if !t.met {
			met = "**no**"
		}
		fmt.Fprintf(&tsec, "| %s | %s | %s | %s |\n", t.name, t.goal, t.got, met)
	}
	fmt.Fprintf(&tsec, "\nAllocations: the plugin's conf and ticket-key lookups allocate nothing after warm-up; `BenchmarkFilterHotPath` below has one allocation per ext-plugin call, the ticket text the Rewrite carries. Relay allocations per request are in the last section, beside a direct call.\n\n")

	fmt.Fprintf(&report, "\n## Where the time goes\n\n"+
		"Per request the runner does two things APISIX cannot skip: one ext-plugin round trip (the runner decodes the flatbuffers call, the plugin mints a ticket, `BenchmarkFilterHotPath` below, and the Rewrite carries it back), and one more HTTP hop on loopback into the relay, which calls the provider on its own pooled connection. The *ext-plugin RPC* column splits the added latency between the two: the RPC is measured by the double around its calls, the rest is the relay hop. "+
		"Whole answers are read completely before they are sent on, because their usage goes into the X-LLM-* response headers APISIX logs: that costs a copy and a JSON validation proportional to the answer (the 64 KB and 1 MB rows), kept down by pooled buffers. "+
		"Streams are copied event by event with a pooled 4 KB reader and flushed at once, which keeps an open stream under 64 KiB (most of it the two HTTP/1.1 connections' buffers) and each event's added delay in the tens of microseconds. "+
		"A CPU profile of the runner under the 64-client load (`-profile DIR`) has it at about a third of one core, a third of that in read and write syscalls: on this VM a loopback write also runs the receiver's side of TCP, so every hop costs about as much as the work around it. "+
		"On a 2-core machine the load generator, the mock, the double and the runner compete for the same cores, so closed-loop throughput (the first three rows) mostly measures CPU sharing and their p99 includes scheduling delays; the latency-bound rows (50 ms provider, fixed rate) are the realistic ones. "+
		"The three columns of each row take turns in %d rounds, so a slow moment of the shared machine hits all of them alike; figures still move by about ±10%% between runs.\n", *roundsFlag)
	fmt.Fprintf(&report, "\n## Before and after\n\n"+
		"What profiling with this harness found and what it changed (figures from runs before and after each change):\n\n"+
		"| change | figure | before | after |\n|---|---|---:|---:|\n"+
		"| pooled answer buffers in the relay | relay time for a 1 MB answer | 6.3 ms | 1.9 ms |\n"+
		"| ticket HMAC on stack buffers | filter hot path | 818 ns, 9 allocs | ~0.5 µs, 1 alloc |\n"+
		"| harness: the double keeps APISIX's 320 idle upstream connections per worker (it kept 32, so bursts of 64 re-dialed) | 64 clients, fixed 50 ms: added p50 / throughput vs direct | 1.9 ms / 94%% | 0.8–1.3 ms / 96–97%% |\n"+
		"| harness: the open-loop sender sends what is due by the clock (a ticker dropped ticks, then bunched them), columns alternate in rounds; runner: the token gate reads frames through a buffer | 1,000 requests/s: achieved rate / added p99 | 825 / 6.7 ms | 1000 / 0.8–1.4 ms |\n"+
		"| stream chunks checked for usage before choices | relay allocations per 200-event stream | 430 | 230 |\n| harness: throughput is divided by the time the requests took (it was the nominal load length, which counts whole requests per client: 5%% steps at 50 ms in a 1 s round), and the provider's 50 ms vary by ± 5 ms so the 64 clients do not move in lockstep | 64 clients, 50 ms: throughput vs direct / vs double | 93–94%% / 96–98%% | 96–97%% / 97–99%% |\n"+
		"| runner: half of the cores by default (GOMAXPROCS; Go woke an idle thread for nearly every ready goroutine) | real APISIX, runner CPU per 1 KB request: one at a time / 300 / 1,000 requests/s | 495 / 584 / 489 µs | 354 / 400 / 360 µs |\n"+
		"| runner: answers APISIX's RPCs itself, no second unix socket to the plugin-runner library (two A/B pairs, same harness) | real APISIX, runner CPU per 1 KB request: one at a time / 300 / 1,000 requests/s; added p50 one at a time | 384–391 / 467–521 / 386–396 µs; 0.52–0.56 ms | 326–337 / 404–471 / 339–379 µs; 0.45–0.50 ms |\n"+
		"| harness (real APISIX): held streams are opened 32 at a time (1000 at once also made APISIX open 1000 ext-plugin sockets, memory the runner keeps and the figure counted) | memory per open stream, fresh runner | 75–80 KiB | 58–67 KiB |\n")
	if realAPISIX {
		sec, err := realSection(bin, m, mockURL, dur, streams)
		if err != nil {
			return err
		}
		report.WriteString(sec)
	}
	if relayBench {
		// The relay's own cost without the double: each scenario made
		// directly and through the relay in one process, with allocations.
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "./plugins/aiproxy/...")
		cmd.Stderr = os.Stderr
		outb, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("relay benchmarks: %w", err)
		}
		var lines []string
		for _, l := range strings.Split(string(outb), "\n") {
			if strings.HasPrefix(l, "Benchmark") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
		fmt.Fprintf(&report, "\n## Relay alone, with allocations (`go test -run '^$' -bench . -benchmem ./plugins/aiproxy/...`)\n\n"+
			"Each scenario in one process, without the double: `direct` is the client calling the mock, `relay` the same call through the relay handler with a ticket. `BenchmarkFilterHotPath` is the plugin's work per ext-plugin call after warm-up (conf and ticket key looked up, ticket minted): its one allocation is the ticket text the Rewrite carries. `BenchmarkRelayChat1KBMulti` is `BenchmarkRelayChat1KB` through an ai-proxy-multi route of three weighted instances, and `BenchmarkPick*` the balancer alone (eight instances in two tiers; one pick and its release): choosing an instance costs well under a microsecond and nothing allocated, against hundreds of microseconds for the ext-plugin round trip. `BenchmarkRelayChat1KBLimited` adds an ai-rate-limiting budget (local policy) to the 1 KB call; `BenchmarkBudgetLocal` and `BenchmarkBudgetRedis` are one budget check alone, a reservation and its settlement, in the runner and in a Redis on loopback (skipped without `redis-server`). `BenchmarkTranslate*` send one OpenAI-style upstream's answer to an OpenAI chat client (`same-protocol`, passed through) and to an Anthropic Messages client (`translated`: the request decoded and re-encoded, the answer or every stream event translated): the difference is the translation's cost per request, and over the 200 events per event.\n\n```\n%s\n```\n", strings.Join(lines, "\n"))
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	final := strings.Replace(report.String(), "## Whole answers", tsec.String()+"## Whole answers", 1)
	if err := os.WriteFile(out, []byte(final), 0o644); err != nil {
		return err
	}
	fmt.Print(final)
	return nil
}

// target is one goal of the benchmark issue and how this run did.
type target struct {
	name, goal, got string
	met             bool
}

// targets collects the goals as the run measures them.
var targets []target

// rpcTimes collects how long the double spent in ext-plugin RPCs per
// request, to split the runner's share between the RPC and the relay hop.
var rpcTimes rpcLog

type rpcLog struct {
	mu  sync.Mutex
	lat []time.Duration
}

func (l *rpcLog) add(e apisix.AccessEntry) {
	if e.ExtPluginTime == 0 {
		return
	}
	l.mu.Lock()
	l.lat = append(l.lat, e.ExtPluginTime)
	l.mu.Unlock()
}

// take returns what was collected since the last take.
func (l *rpcLog) take() result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := result{lat: l.lat, n: len(l.lat)}
	l.lat = nil
	return r
}

type result struct {
	lat       []time.Duration
	n, errors int
	cpuPerReq time.Duration
	// elapsed runs from the first request to the end of the last: a load
	// lets the requests in flight at its deadline finish, and dividing by
	// the nominal length instead would round throughput to whole requests
	// per client (5% steps at 50 ms in a 1 s round).
	elapsed time.Duration
}

func (r *result) add(o result) {
	r.lat = append(r.lat, o.lat...)
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

func (r result) p(q int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	return r.lat[min(len(r.lat)-1, len(r.lat)*q/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (s *setup) do(url string, body []byte) (time.Duration, bool) {
	start := time.Now()
	req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start), resp.StatusCode == 200
}

// load runs closed-loop clients (concurrency) or an open-loop rate.
func (s *setup) load(url string, body []byte, concurrency, rate int, dur time.Duration) result {
	var mu sync.Mutex
	var res result
	record := func(d time.Duration, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			res.errors++
			return
		}
		res.n++
		res.lat = append(res.lat, d)
	}
	s.do(url, body) // warm up connections and the conf token
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	if rate > 0 {
		// A ticker drops ticks when the process is late; sending what is
		// due by the clock keeps the average rate exact.
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		sent := 0
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-tick.C:
				for due := int(time.Since(start) * time.Duration(rate) / time.Second); sent < due; sent++ {
					wg.Add(1)
					go func() { defer wg.Done(); record(s.do(url, body)) }()
				}
			}
		}
	} else {
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					record(s.do(url, body))
				}
			}()
		}
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

type streamResult struct{ first, events, whole result }

func (s *setup) streamLoad(url string, body []byte, concurrency int, dur time.Duration) streamResult {
	var mu sync.Mutex
	var res streamResult
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	began := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := s.client.Do(req)
				if err != nil {
					mu.Lock()
					res.whole.errors++
					mu.Unlock()
					continue
				}
				br := bufio.NewReader(resp.Body)
				var first time.Duration
				var delays []time.Duration
				ok := false
				for {
					line, err := br.ReadString('\n')
					if first == 0 && strings.HasPrefix(line, "data:") {
						first = time.Since(start)
					}
					if sent, found := sentAt(line); found {
						delays = append(delays, time.Since(sent))
					}
					if strings.HasPrefix(line, "data: [DONE]") {
						ok = true
					}
					if err != nil {
						break
					}
				}
				resp.Body.Close()
				mu.Lock()
				if ok {
					res.first.lat = append(res.first.lat, first)
					res.events.lat = append(res.events.lat, delays...)
					res.whole.lat = append(res.whole.lat, time.Since(start))
					res.whole.n++
				} else {
					res.whole.errors++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.whole.elapsed = time.Since(began)
	return res
}

// sentAt reads the mock's sent_ns stamp from an event's data line.
func sentAt(line string) (time.Time, bool) {
	const key = `"sent_ns":`
	i := strings.Index(line, key)
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(key):]
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(rest[:end], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// holdStreams opens n streams and waits until each has its first event;
// the returned func waits for them to end.
//
// At most holdOpening streams are being opened at once, as streams that
// pile up over time do: 1000 opened in the same millisecond would also
// make APISIX open a socket to the runner per concurrent ext-plugin call,
// memory the runner then keeps for reuse and would count here as the
// streams'.
func (s *setup) holdStreams(url string, n int) func() {
	const holdOpening = 32
	var started, done sync.WaitGroup
	opening := make(chan struct{}, holdOpening)
	body := `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stream":true}`
	for range n {
		started.Add(1)
		done.Add(1)
		opening <- struct{}{}
		go func() {
			defer done.Done()
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.client.Do(req)
			if err != nil {
				<-opening
				started.Done()
				return
			}
			br := bufio.NewReader(resp.Body)
			br.ReadString('\n')
			<-opening
			started.Done()
			io.Copy(io.Discard, br)
			resp.Body.Close()
		}()
	}
	started.Wait()
	time.Sleep(200 * time.Millisecond) // let the runner settle before reading RSS
	return done.Wait
}

func procRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procCPU is the process's user+system time.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

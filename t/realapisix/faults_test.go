package realapisix_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/fakes"
)

// Killing the runner (both its processes, as a crash would): APISIX
// notices, waits its fixed 3 s and starts a new one; from then on requests
// succeed again (tokens of the dead runner are refused and prepared anew).
func TestRunnerKilledIsRespawned(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai")
	if resp, body := l.post(t, "/anything", seedMathBody); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	pids := l.RunnerPIDs()
	if len(pids) != 1 {
		t.Fatalf("runner processes: %v", pids)
	}
	for _, pid := range l.AllRunnerPIDs() {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	deadline := killed.Add(15 * time.Second)
	var back time.Duration
	for {
		resp, err := http.Post(l.DataURL+"/anything", "application/json", strings.NewReader(seedMathBody))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if now := l.RunnerPIDs(); len(now) == 1 && now[0] != pids[0] {
					back = time.Since(killed)
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful request 15 s after the runner was killed\n%s", l.ErrorLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("requests succeed again %v after the runner was killed (APISIX waits 3 s before respawning)", back.Round(10*time.Millisecond))
	if !strings.Contains(l.ErrorLog(), "respawn runner 3 seconds later") {
		t.Error("APISIX did not log the respawn")
	}
	// Every request after that succeeds.
	for range 20 {
		if resp, body := l.post(t, "/anything", seedMathBody); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
}

// `apisix reload` under steady traffic on two routes: no request fails and
// none reaches the other route's provider, over several reloads.
func TestReloadUnderTrafficLosesNothing(t *testing.T) {
	l := newLane(t)
	l.putRoute(t, "openai")
	l.putRoute(t, "gemini", func(r string) string { return strings.Replace(r, `"/anything"`, `"/gemini"`, 1) })
	l.waitSynced(t)

	// A stream that runs across the first reload: the old runner serves it
	// to the end (within --shutdown-grace).
	gate := make(chan struct{})
	l.fakes[openAIHost].Script(fakes.Reply{Events: []string{
		`{"id":"s1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"role":"assistant","content":"long"},"finish_reason":null}]}`,
		`{"id":"s1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
		`[DONE]`,
	}, Gate: gate})
	streamResp, err := http.Post(l.DataURL+"/anything", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer streamResp.Body.Close()
	stream := readStream(streamResp.Body)
	if first := stream.next(t, 10*time.Second); !strings.Contains(first, `"long"`) {
		t.Fatalf("first event %q", first)
	}

	var (
		sent, failed, mixed atomic.Int64
		mu                  sync.Mutex
		failures            []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// No keepalive: nginx closes idle client connections on reload, and a
	// POST racing that close fails in any client; that is not what this counts.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, wantProvider := "/anything", "openai"
			if w%2 == 1 {
				path, wantProvider = "/gemini", "gemini"
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := client.Post(l.DataURL+path, "application/json", strings.NewReader(seedMathBody))
				if err != nil {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s %d %s", path, resp.StatusCode, b))
					mu.Unlock()
					continue
				}
				if p := resp.Header.Get("X-LLM-Provider"); p != wantProvider {
					mixed.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	const reloads = 6
	for i := range reloads {
		time.Sleep(700 * time.Millisecond)
		before := l.RunnerPIDs()
		if err := l.Reload(); err != nil {
			t.Fatal(err)
		}
		// Wait until the new runner replaced the old one.
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := l.RunnerPIDs()
			if len(now) == 1 && (len(before) == 0 || now[0] != before[0]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: runners %v -> %v", i, before, now)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if i == 0 {
			time.Sleep(500 * time.Millisecond)
			close(gate)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if rest := stream.rest(); !strings.HasSuffix(rest, "data: [DONE]\n\n") {
		t.Errorf("the stream begun before the reloads was cut: %q", rest)
	}
	// Every old runner finished and left: one supervisor, one worker.
	deadline := time.Now().Add(15 * time.Second)
	for len(l.AllRunnerPIDs()) != 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := l.AllRunnerPIDs(); len(pids) != 2 {
		t.Errorf("runner processes after the reloads: %v", pids)
	}
	t.Logf("%d reloads: %d requests, %d failed, %d answered by the other route's provider", reloads, sent.Load(), failed.Load(), mixed.Load())
	if failed.Load() != 0 || mixed.Load() != 0 {
		if len(failures) > 5 {
			failures = failures[:5]
		}
		t.Errorf("failures: %q", failures)
	}
	if l.fakes[openAIHost].Count() == 0 || l.fakes[geminiHost].Count() == 0 {
		t.Error("traffic did not reach both providers")
	}
}

// `apisix quit` (graceful) with a stream in flight, then `apisix stop`
// with one: README "Stopping and reloading" says what the client sees.
func TestStopWithStreamInFlight(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		name := map[bool]string{true: "apisix quit", false: "apisix stop"}[graceful]
		t.Run(name, func(t *testing.T) {
			l := newLane(t)
			l.putRoute(t, "openai")
			gate := make(chan struct{})
			defer func() {
				select {
				case <-gate:
				default:
					close(gate)
				}
			}()
			l.fakes[openAIHost].Script(fakes.Reply{Events: []string{
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{"role":"assistant","content":"1"},"finish_reason":null}]}`,
				`{"id":"c1","object":"chat.completion.chunk","model":"gpt-4-0613","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				`[DONE]`,
			}, Gate: gate})
			req, _ := http.NewRequest("POST", l.DataURL+"/anything", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			s := readStream(resp.Body)
			if first := s.next(t, 10*time.Second); !strings.Contains(first, `"content":"1"`) {
				t.Fatalf("first event %q", first)
			}
			runners := l.AllRunnerPIDs()
			start := time.Now()
			if graceful {
				if err := l.Quit(); err != nil {
					t.Fatal(err)
				}
				// The stream goes on while APISIX drains, past the second
				// after which APISIX kills the process it started.
				time.Sleep(2 * time.Second)
				close(gate)
				rest := s.rest()
				if !strings.HasSuffix(rest, "data: [DONE]\n\n") {
					t.Errorf("graceful stop cut the stream: %q", rest)
				}
			} else {
				if err := l.StopNow(); err != nil {
					t.Fatal(err)
				}
				rest := s.rest()
				if strings.Contains(rest, "[DONE]") {
					t.Errorf("the stream finished through a stopped APISIX: %q", rest)
				}
			}
			if !waitGonePIDs(runners, 10*time.Second) {
				t.Errorf("the runner still runs after %s", name)
			}
			t.Logf("%s: runner gone %v after the command", name, time.Since(start).Round(10*time.Millisecond))
			_ = gjson.Valid
		})
	}
}

func waitGonePIDs(pids []int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		alive := false
		for _, p := range pids {
			if syscall.Kill(p, 0) == nil {
				alive = true
			}
		}
		if !alive {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

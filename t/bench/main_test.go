package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ai-proxy-runner/ai-proxy-runner/t/realapisix"
)

func TestSentAt(t *testing.T) {
	at, ok := sentAt(`data: {"model":"m","sent_ns":1700000000123456789,"choices":[]}` + "\n")
	if !ok || at.UnixNano() != 1700000000123456789 {
		t.Fatalf("sentAt = %v, %v", at.UnixNano(), ok)
	}
	for _, line := range []string{"data: [DONE]\n", `data: {"sent_ns":x,}`, `data: {"sent_ns":12}`, "\n"} {
		if _, ok := sentAt(line); ok {
			t.Errorf("sentAt(%q) found a stamp", line)
		}
	}
}

// Throughput divides by the time the requests took, not by the nominal
// load length, so rounds add up exactly.
func TestResultRPS(t *testing.T) {
	var r result
	r.add(result{n: 100, elapsed: time.Second})
	r.add(result{n: 50, elapsed: 500 * time.Millisecond, errors: 1})
	if got := r.rps(); got != 100 {
		t.Fatalf("rps = %v, want 100", got)
	}
	if r.errors != 1 || r.n != 150 {
		t.Fatalf("sums: %+v", r)
	}
	if (result{}).rps() != 0 {
		t.Fatal("an empty result has a rate")
	}
}

// The harness itself, briefly: every scenario runs through the real runner
// and the double without a failed request, and the report has each section
// the benchmark issue asks for. No figure is judged here; `make bench` is
// where they are measured.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the runner and loads it")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ai-proxy-runner")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/ai-proxy-runner")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	rounds := 1
	roundsFlag, relayBench, projectConf = &rounds, false, "../../conf"
	out := filepath.Join(dir, "benchmarks.md")
	if err := run(bin, out, 300*time.Millisecond, 20); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	sections := []string{"## Targets", "## Whole answers", "### Added by the runner", "## Streams", "## Memory", "KiB per open stream", "## Real APISIX"}
	if realapisix.Available(realapisix.Home()) == nil {
		sections = append(sections, "### Real-APISIX targets", "| APISIX + runner |")
	}
	for _, section := range sections {
		if !strings.Contains(report, section) {
			t.Errorf("report lacks %q", section)
		}
	}
	// Result rows name their column in the first cell (streams) or the
	// second (whole answers, after the scenario); the last cell is errors.
	labels := map[string]bool{"direct": true, "double": true, "runner": true,
		"double, proxy buffering on": true, "double, `X-Accel-Buffering: no`": true}
	double, realPart, _ := strings.Cut(report, "\n## Real APISIX")
	rows := 0
	for _, line := range strings.Split(double, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 || !labels[strings.TrimSpace(cells[0])] && !labels[strings.TrimSpace(cells[1])] {
			continue
		}
		rows++
		if errs := strings.TrimSpace(cells[len(cells)-1]); errs != "0" {
			t.Errorf("failed requests in %q", line)
		}
	}
	// 5 whole-answer scenarios × 3 columns, 4 stream columns.
	if rows != 19 {
		t.Errorf("found %d result rows, want 19:\n%s", rows, report)
	}
	if realapisix.Available(realapisix.Home()) != nil {
		return
	}
	// Real APISIX: 5 scenarios × 4 columns, 4 stream columns and 4 of one
	// stream at a time, none failed.
	columns := map[string]bool{}
	for _, c := range realColumns {
		columns[c] = true
	}
	rows = 0
	for _, line := range strings.Split(realPart, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 || !columns[strings.TrimSpace(cells[0])] && !columns[strings.TrimSpace(cells[1])] {
			continue
		}
		rows++
		if errs := strings.TrimSpace(cells[len(cells)-1]); errs != "0" {
			t.Errorf("failed requests on real APISIX in %q", line)
		}
	}
	if rows != 28 {
		t.Errorf("found %d real-APISIX result rows, want 28:\n%s", rows, realPart)
	}
}

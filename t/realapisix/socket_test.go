package realapisix_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The ext-plugin socket must accept APISIX's workers (nobody, when APISIX
// runs as root: every seed test proves that) and refuse every other local
// user, who could otherwise get a relay ticket for any route and spend its
// key.
func TestSocketRefusesOtherLocalUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to act as another local user")
	}
	l := newLane(t)
	probeSocket(t, l, 65534, 0)
}

// The same with APISIX started by an unprivileged user (nobody): its
// workers run as that user, and any other user is refused.
func TestSocketUnderUnprivilegedAPISIX(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to start APISIX as another user")
	}
	l := newLane(t, func(o *laneOptions) { o.user = 65534 })
	if pids := l.RunnerPIDs(); len(pids) != 1 || ownerOf(pids[0]) != 65534 {
		t.Fatalf("runner %v not run by nobody", pids)
	}
	probeSocket(t, l, 65533, 65534)
}

func ownerOf(pid int) int {
	fi, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	if err != nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// probeSocket checks that APISIX's workers are served, that a local
// process of user other is refused, and one of APISIX's own user is not.
func probeSocket(t *testing.T, l *lane, other, own uint32) {
	t.Helper()
	l.putRoute(t, "openai")
	if resp, body := l.post(t, "/anything", seedMathBody); resp.StatusCode != 200 {
		t.Fatalf("APISIX's workers (nobody) were refused: %d %s", resp.StatusCode, body)
	}
	probe := filepath.Join(filepath.Dir(runnerBin), "sockprobe")
	if out, err := exec.Command("go", "build", "-o", probe, "./sockprobe").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	run := func(uid uint32) string {
		cmd := exec.Command(probe, l.SocketPath())
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sockprobe: %v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// Another user, not a child of APISIX's master (when APISIX runs as
	// root that is nobody, the workers' user).
	if got := run(other); !strings.HasPrefix(got, "refused") {
		t.Errorf("a local process of uid %d got: %s", other, got)
	}
	// APISIX's own user is trusted: it could read the runner's memory anyway.
	if got := run(own); got != "token" {
		t.Errorf("a process of APISIX's own user got: %s", got)
	}
	if !strings.Contains(l.ErrorLog(), "refused a connection on APISIX's socket") {
		t.Error("the refusal was not logged")
	}
	// APISIX still serves.
	if resp, body := l.post(t, "/anything", seedMathBody); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

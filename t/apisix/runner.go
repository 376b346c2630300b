package apisix

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// runnerProc is one spawned runner process.
type runnerProc struct {
	cmd        *exec.Cmd
	done       chan struct{}
	stopped    bool // exited because we stopped it: no respawn
	keepTokens bool // a reload: no runner_exit event, caches survive (§1)
}

// StartRunner spawns the runner as APISIX's privileged agent does (§1) and
// waits for its socket.
func (g *Gateway) StartRunner() error {
	g.runnerMu.Lock()
	defer g.runnerMu.Unlock()
	return g.spawnLocked()
}

func (g *Gateway) spawnLocked() error {
	if g.opts.RunnerCmd == nil {
		return errStopped
	}
	cmd := exec.Command(g.opts.RunnerCmd[0], g.opts.RunnerCmd[1:]...)
	// nginx empties the environment but for declared variables (§1).
	cmd.Env = append([]string{
		"APISIX_LISTEN_ADDRESS=unix:" + g.sock,
		"APISIX_CONF_EXPIRE_TIME=3600",
		"PATH=" + os.Getenv("PATH"),
	}, g.opts.Env...)
	cmd.Stdout = g.opts.RunnerOutput
	cmd.Stderr = g.opts.RunnerOutput
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("spawning runner: %w", err)
	}
	p := &runnerProc{cmd: cmd, done: make(chan struct{})}
	g.runner = p
	go g.supervise(p)
	return g.waitSocket()
}

// supervise waits for the runner's exit; APISIX then flushes every token
// cache and respawns it after a pause (§1).
func (g *Gateway) supervise(p *runnerProc) {
	err := p.cmd.Wait()
	code := p.cmd.ProcessState.ExitCode()
	close(p.done)
	g.opts.Logf("runner exited with reason: exit, status: %d (%v)", code, err)
	g.runnerMu.Lock()
	keep := p.keepTokens
	g.runnerMu.Unlock()
	if !keep {
		g.flushTokens()
	}
	for _, w := range g.workers {
		w.closeIdle()
	}
	g.runnerMu.Lock()
	respawn := !p.stopped && !g.closing.Load() && g.opts.RespawnDelay > 0 && g.runner == p
	g.runnerMu.Unlock()
	if !respawn {
		return
	}
	g.opts.Logf("respawn runner %s later", g.opts.RespawnDelay)
	time.Sleep(g.opts.RespawnDelay)
	g.runnerMu.Lock()
	defer g.runnerMu.Unlock()
	if g.runner == p && !g.closing.Load() {
		if err := g.spawnLocked(); err != nil {
			g.opts.Logf("respawn failed: %v", err)
		}
	}
}

// StopRunner sends SIGTERM, waits StopTimeout, then SIGKILL (§1); the
// token caches are flushed as on a runner_exit event.
func (g *Gateway) StopRunner() error { return g.stop(false) }

// ReloadRunner replaces the runner as `apisix reload` does on real APISIX:
// the old agent sends SIGTERM and its exit SIGKILLs the runner StopTimeout
// later, while the new agent starts the next runner ReloadSpawnDelay after
// the SIGTERM, so the two overlap on the same socket path. No runner_exit
// event: every worker keeps its tokens and the new runner is sent tokens it
// never issued (§1, §4).
func (g *Gateway) ReloadRunner() error {
	g.runnerMu.Lock()
	old := g.runner
	if old != nil {
		old.stopped = true
		old.keepTokens = true
	}
	g.runnerMu.Unlock()
	if old != nil {
		_ = old.cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			select {
			case <-old.done:
			case <-time.After(g.opts.StopTimeout):
				_ = old.cmd.Process.Kill()
			}
		}()
		time.Sleep(g.opts.ReloadSpawnDelay)
	}
	return g.StartRunner()
}

func (g *Gateway) stop(keepTokens bool) error {
	g.runnerMu.Lock()
	p := g.runner
	if p == nil {
		g.runnerMu.Unlock()
		return nil
	}
	p.stopped = true
	p.keepTokens = keepTokens
	g.runnerMu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(g.opts.StopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("runner did not exit within %s of SIGTERM; killed", g.opts.StopTimeout)
	}
	return nil
}

// SignalRunner sends a signal; an exit it causes is supervised as any exit.
func (g *Gateway) SignalRunner(sig os.Signal) error {
	g.runnerMu.Lock()
	defer g.runnerMu.Unlock()
	if g.runner == nil {
		return errStopped
	}
	return g.runner.cmd.Process.Signal(sig)
}

// RunnerPID is the current runner's pid, 0 when none.
func (g *Gateway) RunnerPID() int {
	g.runnerMu.Lock()
	defer g.runnerMu.Unlock()
	if g.runner == nil {
		return 0
	}
	return g.runner.cmd.Process.Pid
}

// RunnerExited is closed when the current runner process ends.
func (g *Gateway) RunnerExited() <-chan struct{} {
	g.runnerMu.Lock()
	defer g.runnerMu.Unlock()
	if g.runner == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return g.runner.done
}

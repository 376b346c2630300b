package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
)

// childEnv marks the process that does the work; see supervise.
const childEnv = "AI_PROXY_RUNNER_WORKER"

// supervise runs the runner in a child process and returns its exit code.
//
// APISIX stops its runner with SIGTERM and, one second later, SIGKILL; on
// `apisix reload` it starts the next runner only about when that kill
// comes. A runner killed that early drops every call still on its
// connections, and the two never overlap. So the process APISIX starts
// (and kills) only supervises: the child gets SIGTERM, serves on until its
// successor has taken the relay and APISIX's connections over
// (package gate), then exits by itself. If this process dies by any other
// means the child gets SIGTERM too (Pdeathsig).
func supervise(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ai-proxy-runner:", err)
		return 1
	}
	// Pdeathsig follows the thread that started the child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "ai-proxy-runner:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
			if sig != syscall.SIGHUP {
				return 0 // the child finishes on its own
			}
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return exit.ExitCode()
			}
			if err != nil {
				return 1
			}
			return 0
		}
	}
}

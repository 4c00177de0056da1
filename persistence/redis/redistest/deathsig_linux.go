package redistest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the server if the test binary dies without
// running its cleanups (a panic in another goroutine, the go test timeout), so no
// redis-server outlives the run. Each server is its own process group, so a signal meant
// for the test's group (a terminal's Ctrl-C) does not reach it before its cleanup, and the
// tests signal exactly the process they started.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

package redistest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the server if the test binary dies without
// running its cleanups (a panic in another goroutine, the go test timeout), so no
// redis-server outlives the run.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

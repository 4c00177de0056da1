//go:build linux

package ffmpeg

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// sysProcAttr puts a job in its own process group (so a stop reaches everything it
// started) and has the kernel kill it when the thread that started it dies: the supervisor
// goroutine keeps its OS thread locked for the job's life, so that is when the server dies,
// even by kill -9.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// isJob reports whether pid is still an ffmpeg publishing to output: a pid file may outlive
// its process, and the pid may since belong to something else.
func isJob(pid int, output string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(output))
}

//go:build unix && !linux

package ffmpeg

import "syscall"

// sysProcAttr puts a job in its own process group. Only Linux has a parent-death signal:
// elsewhere a job outlives a killed server until the next start reconciles it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// isJob cannot look at another process's command line without /proc; a leftover is then
// only trusted by its pid file, and not killed, because the pid may have been reused.
func isJob(int, string) bool { return false }

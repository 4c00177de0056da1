//go:build unix

package ffmpeg

import "syscall"

// killGroup signals the process group a job leads (its pid is the group's id), so a stop
// reaches everything it started, and the job itself should it have left the group.
func killGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
	_ = syscall.Kill(pid, sig)
}

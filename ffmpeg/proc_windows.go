//go:build windows

package ffmpeg

import (
	"os"
	"syscall"
)

// sysProcAttr: Windows has neither process groups to signal nor a parent-death signal; mix:
// ffmpeg is meant for Linux (docs/self-hosted.md), this keeps the server building there.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup ends the job at once: Windows has no SIGTERM to offer a grace.
func killGroup(pid int, _ syscall.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func isJob(int, string) bool { return false }

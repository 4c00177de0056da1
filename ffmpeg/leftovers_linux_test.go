//go:build linux

package ffmpeg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A job a previous run left behind (its server died and no parent-death signal reached it)
// is killed when the next Mixer starts, by its pid file; a pid file whose process is not
// such a job any more (the pid was reused) kills nothing. Both files are removed.
func TestNewKillsLeftovers(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg is not installed: run `make test` (its test-deps step installs it)")
	}
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "App")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stand-in for a leftover job: an ffmpeg whose command line names the output
	// /App/room1_mix, in a process group of its own and without a parent-death signal.
	leftover := exec.Command("ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=1",
		"-f", "flv", "-y", filepath.Join(out, "room1_mix"))
	leftover.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = leftover.Wait(); close(exited) }()
	t.Cleanup(func() { _ = leftover.Process.Kill(); <-exited })
	// A process that is no job, whose pid a stale file names.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	otherExited := make(chan struct{})
	go func() { _ = other.Wait(); close(otherExited) }()
	t.Cleanup(func() { _ = other.Process.Kill(); <-otherExited })
	write := func(name string, pid int, stream string) {
		if err := os.WriteFile(filepath.Join(state, name), []byte(strconv.Itoa(pid)+"\n"+stream+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("room1.pid", leftover.Process.Pid, "room1_mix")
	write("room2.pid", other.Process.Pid, "room2_mix")

	if _, err := New(Config{Binary: "ffmpeg", AppName: "App", TemplateName: "_mix", StateDir: state, MaxJobs: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover job is still running")
	}
	select {
	case <-otherExited:
		t.Fatal("a process that is no job was killed")
	default:
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("pid files left: %v", entries)
	}
}

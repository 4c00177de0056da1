package ffmpeg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"roomengine/actors"
)

// job is one mixed stream: the ffmpeg process composing main's mix, restarted by its
// supervisor when it crashes or stalls.
type job struct {
	main, partner string
	output        string // the published stream's name
	args          []string

	flowing  chan struct{} // closed once the output flows
	flowOnce sync.Once
	failed   chan struct{} // closed when the job gave up
	stop     chan struct{} // closed by requestStop
	stopOnce sync.Once
	done     chan struct{} // closed when the supervisor (and its process) ended

	mu        sync.Mutex
	why       string // the failure
	confirmed bool   // a Start answered success: failures are reported as events now
	pid       int
}

func (m *Mixer) newJob(req actors.MixRequest) *job {
	return &job{main: req.MainStream, partner: req.MixStream, output: m.OutputName(req.MainStream),
		args:    args(m.pullURL(req.MainStream), m.pullURL(req.MixStream), m.pushURL(req.MainStream), req.Template, m.cfg.Output),
		flowing: make(chan struct{}), failed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
}

func (j *job) markFlowing()  { j.flowOnce.Do(func() { close(j.flowing) }) }
func (j *job) requestStop()  { j.stopOnce.Do(func() { close(j.stop) }) }
func (j *job) stopped() bool { return isClosed(j.stop) }

func (j *job) confirm() {
	j.mu.Lock()
	j.confirmed = true
	j.mu.Unlock()
}

func (j *job) failure() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.why
}

// PIDs are the process ids of the running jobs' ffmpeg, by main room (for tests and logs).
func (m *Mixer) PIDs() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for room, j := range m.jobs {
		j.mu.Lock()
		if j.pid > 0 {
			out[room] = j.pid
		}
		j.mu.Unlock()
	}
	return out
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// supervise runs j's ffmpeg until it is stopped, restarting it after a crash or a stall
// with a doubling backoff, at most MaxRestarts times within RestartWindow.
func (m *Mixer) supervise(j *job) {
	// The parent-death signal is tied to the thread that started the child: this goroutine
	// keeps its thread for the job's whole life (the thread ends with it).
	runtime.LockOSThread()
	defer close(j.done)
	defer m.remove(j)
	backoff := m.cfg.RestartBackoff
	var restarts []time.Time
	for {
		began := time.Now()
		why := m.runOnce(j)
		if j.stopped() {
			return
		}
		now := time.Now()
		if now.Sub(began) > m.cfg.RestartWindow {
			backoff = m.cfg.RestartBackoff // it ran well for a long time: start over
		}
		kept := restarts[:0]
		for _, t := range restarts {
			if now.Sub(t) < m.cfg.RestartWindow {
				kept = append(kept, t)
			}
		}
		restarts = kept
		if len(restarts) >= m.cfg.MaxRestarts {
			m.giveUp(j, fmt.Sprintf("%s; %d restarts within %v used up", why, len(restarts), m.cfg.RestartWindow))
			return
		}
		restarts = append(restarts, now)
		m.log.Warn("ffmpeg mix restarting", "room", j.main, "reason", why, "restart", len(restarts), "backoff", backoff)
		select {
		case <-j.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// giveUp ends a job that cannot be kept running: a waiting Start fails with why, a started
// mix is reported to OnFailure.
func (m *Mixer) giveUp(j *job, why string) {
	j.mu.Lock()
	j.why = why
	confirmed := j.confirmed
	j.mu.Unlock()
	close(j.failed)
	m.log.Error("ffmpeg mix given up", "room", j.main, "reason", why)
	if confirmed && m.cfg.OnFailure != nil {
		m.remove(j) // before the event: a retried Start makes a new job
		m.cfg.OnFailure(j.main, why)
	}
}

// runOnce runs ffmpeg until it exits, stalls or is stopped, and says why it ended.
func (m *Mixer) runOnce(j *job) string {
	cmd := exec.Command(m.cfg.Binary, j.args...)
	cmd.SysProcAttr = sysProcAttr()
	progress := &progressWriter{}
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = progress, stderr
	if err := cmd.Start(); err != nil {
		return "start: " + err.Error()
	}
	pid := cmd.Process.Pid
	j.mu.Lock()
	j.pid = pid
	j.mu.Unlock()
	m.writePID(j, pid)
	defer m.removePID(j)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(min(time.Second, m.cfg.StallTimeout/4))
	defer tick.Stop()
	lastSize, lastMove := int64(-1), time.Now()
	for {
		select {
		case err := <-exited:
			return "ffmpeg exited: " + exitReason(err, stderr.String())
		case <-j.stop:
			terminate(pid, exited, m.cfg.StopGrace)
			return "stopped"
		case <-tick.C:
			size := progress.size.Load()
			if size > lastSize {
				lastSize, lastMove = size, time.Now()
			}
			if size >= flowBytes {
				j.markFlowing()
			}
			if time.Since(lastMove) > m.cfg.StallTimeout {
				killGroup(pid, syscall.SIGKILL)
				<-exited
				return fmt.Sprintf("output stalled for %v", m.cfg.StallTimeout)
			}
		}
	}
}

// terminate ends the process group of pid: SIGTERM, then SIGKILL after grace. It returns
// once the process was reaped.
func terminate(pid int, exited <-chan error, grace time.Duration) {
	killGroup(pid, syscall.SIGTERM)
	select {
	case <-exited:
		// ffmpeg is the group's only process; a straggler of the group goes too.
		killGroup(pid, syscall.SIGKILL)
	case <-time.After(grace):
		killGroup(pid, syscall.SIGKILL)
		<-exited
	}
}

func exitReason(err error, stderr string) string {
	var ee *exec.ExitError
	reason := "status 0"
	if errors.As(err, &ee) {
		reason = ee.ProcessState.String()
	} else if err != nil {
		reason = err.Error()
	}
	if s := strings.TrimSpace(stderr); s != "" {
		reason += ": " + lastLine(s)
	}
	return reason
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// progressWriter reads ffmpeg's -progress blocks and keeps the output's total_size.
type progressWriter struct {
	mu   sync.Mutex
	buf  []byte
	size atomic.Int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	consumed := 0
	for {
		i := bytes.IndexByte(p.buf[consumed:], '\n')
		if i < 0 {
			break
		}
		line := string(p.buf[consumed : consumed+i])
		consumed += i + 1
		if v, ok := strings.CutPrefix(line, "total_size="); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				p.size.Store(n)
			}
		}
	}
	p.buf = append(p.buf[:0], p.buf[consumed:]...)
	if len(p.buf) > 4096 { // no newline in sight: not progress output
		p.buf = p.buf[:0]
	}
	return len(b), nil
}

// tailBuffer keeps the last max bytes written to it (ffmpeg's error output, for the log).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// writePID records a running job, so the next start finds it if this process dies.
func (m *Mixer) writePID(j *job, pid int) {
	if m.cfg.StateDir == "" {
		return
	}
	body := strconv.Itoa(pid) + "\n" + j.output + "\n"
	if err := os.WriteFile(m.pidFile(j.main), []byte(body), 0o644); err != nil {
		m.log.Warn("ffmpeg pid file not written", "room", j.main, "err", err)
	}
}

func (m *Mixer) removePID(j *job) {
	if m.cfg.StateDir != "" {
		_ = os.Remove(m.pidFile(j.main))
	}
}

// killLeftovers kills the jobs whose pid files a previous run left (it died without
// stopping them, and the parent-death signal did not reach them) and removes the files.
// The calls they belonged to start their mixes again (actors.EngineConfig.ResumeMixes).
func (m *Mixer) killLeftovers() {
	if m.cfg.StateDir == "" {
		return
	}
	entries, err := os.ReadDir(m.cfg.StateDir)
	if err != nil {
		m.log.Warn("ffmpeg state dir not read", "err", err)
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		path := m.cfg.StateDir + string(os.PathSeparator) + e.Name()
		body, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		lines := strings.SplitN(string(body), "\n", 3)
		pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
		if err == nil && pid > 1 && len(lines) > 1 && validStream(strings.TrimSpace(lines[1])) &&
			isJob(pid, "/"+m.cfg.AppName+"/"+strings.TrimSpace(lines[1])) {
			killGroup(pid, syscall.SIGKILL)
			m.log.Warn("killed an ffmpeg mix left by a previous run", "pid", pid, "stream", strings.TrimSpace(lines[1]))
		}
		_ = os.Remove(path)
	}
}

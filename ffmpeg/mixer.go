// Package ffmpeg mixes co-streaming calls on a self-hosted media server (mix: ffmpeg): one
// supervised ffmpeg process per mixed stream pulls the two rooms' streams and publishes the
// composed one. It implements actors.Mixer.
package ffmpeg

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"roomengine/actors"
	"roomengine/aliyun"
)

// Config wires a Mixer.
type Config struct {
	// Binary is the ffmpeg executable.
	Binary string
	// PlayHost is where the rooms' streams are pulled (rtmp://PlayHost/AppName/room);
	// RtmpHost where the mix is published (rtmp://RtmpHost/AppName/room+TemplateName).
	PlayHost, RtmpHost, AppName, TemplateName string
	// AuthKey signs the published mix's URL (URL auth type A) when set, as the hooks
	// demand of every publish then.
	AuthKey string
	Output  Output
	// MaxJobs bounds the jobs running at once.
	MaxJobs int
	// MaxRestarts within RestartWindow; one more crash gives the mix up.
	MaxRestarts    int
	RestartWindow  time.Duration
	RestartBackoff time.Duration
	StopGrace      time.Duration
	StallTimeout   time.Duration
	// StateDir keeps a pid file per running job, so a server that died without stopping
	// its jobs kills what is left of them at its next start.
	StateDir string
	Logger   *slog.Logger
	// OnFailure is told when a mix that had started is given up (its restarts used up, or
	// its resumption after a restart failed): the caller turns it into push 14.
	OnFailure func(mainRoom, message string)
}

// Mixer runs the jobs. Its methods are safe for concurrent use.
type Mixer struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex
	jobs map[string]*job // by main room
}

// maxBackoff caps the doubling restart backoff.
const maxBackoff = 30 * time.Second

// flowBytes is how much ffmpeg must have written to the media server before the mix counts
// as flowing without the media server's hook having said so (in a cluster the hook may
// reach another node than the job's).
const flowBytes = 16 << 10

// New makes a Mixer and kills the jobs a previous run of the server left behind.
func New(cfg Config) (*Mixer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TemplateName != "" && !validStream(cfg.TemplateName) {
		return nil, fmt.Errorf("videocall.templateName %q cannot name an ffmpeg output stream (letters, digits, _)", cfg.TemplateName)
	}
	if !validStream(cfg.AppName) {
		return nil, fmt.Errorf("appName %q cannot be part of an ffmpeg stream URL (letters, digits, _)", cfg.AppName)
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("ffmpeg state dir: %w", err)
		}
	}
	m := &Mixer{cfg: cfg, log: cfg.Logger, jobs: map[string]*job{}}
	m.killLeftovers()
	return m, nil
}

// OutputName is the stream a job publishes for the mix whose main room is room.
func (m *Mixer) OutputName(room string) string { return room + m.cfg.TemplateName }

func (m *Mixer) pullURL(room string) string {
	return "rtmp://" + m.cfg.PlayHost + "/" + m.cfg.AppName + "/" + room
}

func (m *Mixer) pushURL(room string) string {
	path := "/" + m.cfg.AppName + "/" + m.OutputName(room)
	u := "rtmp://" + m.cfg.RtmpHost + path
	if m.cfg.AuthKey != "" {
		u += "?auth_key=" + aliyun.AuthKeyA(path, time.Now().Add(24*time.Hour).Unix(), m.cfg.AuthKey)
	}
	return u
}

// Ready is the engine's MixerReady: an accept is refused (503) while every job slot is
// taken, rather than admitting a call whose mix cannot start.
func (m *Mixer) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.jobs) >= m.cfg.MaxJobs {
		return fmt.Errorf("ffmpeg.maxJobs (%d) mixes are running", m.cfg.MaxJobs)
	}
	return nil
}

// Jobs is the number of jobs running.
func (m *Mixer) Jobs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.jobs)
}

// StartMix starts (or, when one runs for the same pair, joins) the job of req and returns
// once its output flows: the media server's hook saw it published, or ffmpeg wrote enough
// to it. A Start that fails leaves no job behind.
func (m *Mixer) StartMix(ctx context.Context, req actors.MixRequest) (actors.MixStarted, error) {
	started, err := m.start(ctx, req)
	if err != nil && req.Resume && m.cfg.OnFailure != nil {
		// Nobody waits for a resumption's answer: the failure is the mix's own event.
		m.cfg.OnFailure(req.MainStream, err.Error())
	}
	return started, err
}

func (m *Mixer) start(ctx context.Context, req actors.MixRequest) (actors.MixStarted, error) {
	if !validStream(req.MainStream) || !validStream(req.MixStream) {
		return actors.MixStarted{}, actors.Errorf(actors.CodeMixInvalidArg, "invalid stream name")
	}
	m.mu.Lock()
	j := m.jobs[req.MainStream]
	if j != nil && j.partner != req.MixStream {
		// The room mixes with someone else now: the old job is over.
		m.mu.Unlock()
		m.stopJob(j)
		m.mu.Lock()
		j = m.jobs[req.MainStream]
	}
	if j == nil {
		if len(m.jobs) >= m.cfg.MaxJobs {
			m.mu.Unlock()
			return actors.MixStarted{}, actors.Errorf(actors.CodeUnavailable, "ffmpeg.maxJobs (%d) mixes are running", m.cfg.MaxJobs)
		}
		j = m.newJob(req)
		m.jobs[req.MainStream] = j
		go m.supervise(j)
	}
	m.mu.Unlock()
	select {
	case <-j.flowing:
		j.confirm()
		return actors.MixStarted{Streams: []string{m.OutputName(req.MainStream) + ".flv"}}, nil
	case <-j.failed:
		return actors.MixStarted{}, actors.Errorf(actors.CodeMixFailed, "ffmpeg混流失败: %s", j.failure())
	case <-j.done:
		return actors.MixStarted{}, actors.Errorf(actors.CodeMixInternal, "ffmpeg混流已停止")
	case <-ctx.Done():
		m.stopJob(j)
		return actors.MixStarted{}, actors.Errorf(actors.CodeMixInternal, "ffmpeg混流输出未就绪 (%v)", ctx.Err())
	}
}

// StopMix ends the job of req's main room: SIGTERM, then SIGKILL after the grace. Stopping
// a mix that is not running succeeds.
func (m *Mixer) StopMix(_ context.Context, req actors.MixRequest) error {
	m.mu.Lock()
	j := m.jobs[req.MainStream]
	m.mu.Unlock()
	if j != nil {
		m.stopJob(j)
	}
	return nil
}

// OutputPublished is the media server's publish hook for stream (room + template): it
// reports whether a job of this server publishes it, and marks that job flowing.
func (m *Mixer) OutputPublished(stream string) bool {
	j := m.jobFor(stream)
	if j == nil {
		return false
	}
	j.markFlowing()
	return true
}

// OutputDone is the media server's publish_done hook for stream: the job's output stopped
// (it is restarting, or stopping).
func (m *Mixer) OutputDone(stream string) bool {
	return m.jobFor(stream) != nil
}

func (m *Mixer) jobFor(stream string) *job {
	room, ok := strings.CutSuffix(stream, m.cfg.TemplateName)
	if !ok {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobs[room]
}

// Close stops every job (the server is shutting down; the calls resume at its next start).
func (m *Mixer) Close() {
	m.mu.Lock()
	jobs := make([]*job, 0, len(m.jobs))
	for _, j := range m.jobs {
		jobs = append(jobs, j)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); m.stopJob(j) }()
	}
	wg.Wait()
}

// stopJob asks j's supervisor to stop and waits until its process is gone.
func (m *Mixer) stopJob(j *job) {
	j.requestStop()
	<-j.done
}

func (m *Mixer) remove(j *job) {
	m.mu.Lock()
	if m.jobs[j.main] == j {
		delete(m.jobs, j.main)
	}
	m.mu.Unlock()
}

func (m *Mixer) pidFile(room string) string {
	return filepath.Join(m.cfg.StateDir, room+".pid")
}

//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The self-hosted media path with real processes: nginx with Debian's rtmp module
// (docs/nginx-rtmp.conf on free loopback ports, its hooks pointing at the server), the
// server with mix: ffmpeg, and ffmpeg test sources as the encoders. Frames are tiny and the
// frame rate low, so the whole thing runs on two shared cores.

const (
	mediaAuthKey    = "media-e2e-auth-key"
	mediaHookSecret = "media-e2e-hook-secret"
	mediaHeight     = 120 // ffmpeg.height of the mix; the sources are 160x120
)

// mediaStack is nginx-rtmp plus one server, and what is needed to restart the server.
type mediaStack struct {
	t                  *testing.T
	bin                string
	port               int
	rtmpPort, statPort int
	env                []string
	app                *proc
	nginxDir           string
}

// rtmp is the base URL of the media server's application.

// nginxClient talks to nginx-rtmp's own HTTP port.
var nginxClient = &http.Client{Timeout: 5 * time.Second}

func (m *mediaStack) rtmp() string { return fmt.Sprintf("rtmp://127.0.0.1:%d/DemoApp", m.rtmpPort) }

// startMediaStack starts nginx-rtmp and the server; nginx rewrites more of the documented
// configuration, extra adds server environment.
func startMediaStack(t *testing.T, nginx map[string]string, extra ...string) *mediaStack {
	t.Helper()
	if testing.Short() {
		t.Skip("runs nginx-rtmp, ffmpeg and the real binary")
	}
	ngxBin := ngxLookPath(t)
	ffmpegLookPath(t)
	m := &mediaStack{t: t, bin: binary(t), port: freePort(t), rtmpPort: freePort(t), statPort: freePort(t)}
	m.env = append([]string{"APPSERVER_DATADIR=" + t.TempDir(), "APPSERVER_MIX=ffmpeg",
		fmt.Sprintf("APPSERVER_RTMPHOST=127.0.0.1:%d", m.rtmpPort), fmt.Sprintf("APPSERVER_PLAYHOST=127.0.0.1:%d", m.rtmpPort),
		"APPSERVER_AUTHKEY=" + mediaAuthKey, "APPSERVER_MEDIA_HOOKSECRET=" + mediaHookSecret,
		fmt.Sprintf("APPSERVER_MEDIA_STATURL=http://127.0.0.1:%d/stat", m.statPort),
		fmt.Sprint("APPSERVER_FFMPEG_HEIGHT=", mediaHeight), "APPSERVER_FFMPEG_FPS=10", "APPSERVER_FFMPEG_VIDEOBITRATE=150k",
		"APPSERVER_FFMPEG_AUDIOBITRATE=32k", "APPSERVER_FFMPEG_RESTARTBACKOFF=300ms", "APPSERVER_FFMPEG_STOPGRACE=3s",
		"APPSERVER_VIDEOCALL_TEMPLATENAME=_mix", "APPSERVER_MEDIA_PLAYURL_FLV=rtmp://{playHost}/{appName}/{stream}",
		fmt.Sprintf("APPSERVER_MEDIA_PLAYURL_HLS=http://127.0.0.1:%d/hls/{stream}.m3u8", m.statPort)}, extra...)
	m.nginxDir = startNginxRTMP(t, ngxBin, m.port, m.rtmpPort, m.statPort, nginx)
	m.app = start(t, m.bin, m.port, m.env...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- server log (tail):\n%s", ngxTail(m.app.log.String(), 40))
			b, _ := os.ReadFile(filepath.Join(m.nginxDir, "error.log"))
			t.Logf("--- nginx error log (tail):\n%s", ngxTail(string(b), 30))
		}
	})
	return m
}

func ffmpegLookPath(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run `make test` (its test-deps step installs it) or `sudo apt-get install ffmpeg`", tool)
		}
	}
}

// startNginxRTMP runs nginx in the foreground with docs/nginx-rtmp.conf, its ports rewritten,
// everything else in a temporary directory; it returns the directory once nginx serves /stat.
func startNginxRTMP(t *testing.T, bin string, appPort, rtmpPort, statPort int, more map[string]string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "nginx-rtmp.conf"))
	require.NoError(t, err)
	conf := string(doc)
	dir := t.TempDir()
	// A test's own changes first: they name the documented text.
	for from, to := range more {
		require.Contains(t, conf, from)
		conf = strings.ReplaceAll(conf, from, to)
	}
	for from, to := range map[string]string{
		"listen 127.0.0.1:1935;":  fmt.Sprintf("listen 127.0.0.1:%d;", rtmpPort),
		"listen 127.0.0.1:8088;":  fmt.Sprintf("listen 127.0.0.1:%d;", statPort),
		"http://127.0.0.1:4000/":  fmt.Sprintf("http://127.0.0.1:%d/", appPort),
		"secret=change-me":        "secret=" + mediaHookSecret,
		"/var/lib/roomengine/hls": hlsDir(t),
		"worker_processes 1;":     fmt.Sprintf("worker_processes 1;\npid %[1]s/nginx.pid;\nerror_log %[1]s/error.log info;", dir),
		"http {": fmt.Sprintf("http {\n    access_log %[1]s/access.log;\n    client_body_temp_path %[1]s/cb;\n    proxy_temp_path %[1]s/px;\n"+
			"    fastcgi_temp_path %[1]s/fc;\n    uwsgi_temp_path %[1]s/uw;\n    scgi_temp_path %[1]s/sc;", dir),
	} {
		require.Contains(t, conf, from, "docs/nginx-rtmp.conf changed shape")
		conf = strings.ReplaceAll(conf, from, to)
	}

	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	cmd := exec.Command(bin, "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"),
		"-g", "daemon off;")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	eventually(t, 15*time.Second, "nginx-rtmp serving /stat", func() error {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited at start:\n%s\n%s\n%s", out, log, conf)
		default:
		}
		// Not the package's validating client: it checks answers against docs/openapi.yaml
		// for every host:port an appserver of this test process ever listened on, and the
		// kernel may give nginx such a port again.
		res, err := nginxClient.Get(fmt.Sprintf("http://127.0.0.1:%d/stat", statPort))
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
	return dir
}

// hlsDir is where nginx writes HLS: outside the test's private temporary directory, since
// nginx's workers may run as another user (nobody, when the tests run as root).
func hlsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "roomengine-hls-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o777))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// encoder is an ffmpeg test source publishing to a push URL, as a broadcaster's app would.
type encoder struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

func startEncoder(t *testing.T, pushURL, pattern string, tone int) *encoder {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
		"-f", "lavfi", "-i", pattern+"=size=160x120:rate=10", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=44100", tone),
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-b:v", "100k",
		"-c:a", "aac", "-b:a", "32k", "-f", "flv", pushURL)
	e := &encoder{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = e.out, e.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(e.exited) }()
	t.Cleanup(e.kill)
	return e
}

func (e *encoder) kill() {
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	<-e.exited
}

func (e *encoder) stop() {
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		e.kill()
	}
}

// mediaRoom is a host with a room, watched on its topic.
type mediaRoom struct {
	uid, id, pushURL string
	watch            *topicWatch
}

func (m *mediaStack) newRoom(t *testing.T, name string) *mediaRoom {
	t.Helper()
	uid := field(t, m.app.call(t, "/login", url.Values{"name": {name}}), "id")
	created := m.app.call(t, "/live/create", url.Values{"uid": {uid}})
	r := &mediaRoom{uid: uid, id: field(t, created, "roomId"), pushURL: field(t, created, "rtmpUrl")}
	require.True(t, strings.HasPrefix(r.pushURL, m.rtmp()+"/"+r.id+"?auth_key="), "rtmpUrl %s points at the media server", r.pushURL)
	r.watch = watchTopic(t, m.app.base, r.id)
	return r
}

// accept makes a host–host call of a and b with layout and returns the feedback's code.
func (m *mediaStack) accept(t *testing.T, a, b *mediaRoom, layout string) int {
	t.Helper()
	m.app.call(t, "/videocall/invite", url.Values{"inviterUid": {a.uid}, "inviteeUid": {b.uid}, "liveRoomId": {a.id},
		"inviterType": {"2"}, "type": {layout}})
	code, _ := m.app.code(t, "/videocall/feedback", url.Values{"status": {"1"}, "inviterUid": {a.uid}, "inviteeUid": {b.uid},
		"inviterType": {"2"}, "inviteeType": {"2"}, "type": {layout}})
	return code
}

// mixJobs are the running ffmpeg mix jobs publishing to this stack's media server, by pid:
// every process on the machine is looked at, so a job orphaned by its server counts too.
func (m *mediaStack) mixJobs() map[int]string {
	jobs := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	marker := []byte(fmt.Sprintf("rtmp://127.0.0.1:%d/DemoApp/", m.rtmpPort))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, marker) || !bytes.Contains(cmdline, []byte("-progress")) {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && bytes.Contains(stat, []byte(") Z ")) {
			continue // a zombie is reaped by its parent (checked apart)
		}
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		jobs[pid] = args[len(args)-1] // the output URL
	}
	return jobs
}

// zombies counts the server's children that exited and were not reaped.
func zombiesOf(pid int) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n++
		}
	}
	return n
}

// probed is what ffprobe sees of a stream.
type probed struct {
	video         bool
	width, height int
	audio         bool
}

// probe reads the stream at u with ffprobe (15 s at most).
func probe(u string) (probed, error) {
	out, err := exec.Command("timeout", "15", "ffprobe", "-v", "error", "-rw_timeout", "10000000",
		"-analyzeduration", "3000000", "-show_entries", "stream=codec_type,width,height", "-of", "json", u).Output()
	if err != nil {
		return probed{}, fmt.Errorf("ffprobe %s: %v", u, err)
	}
	var doc struct {
		Streams []struct {
			CodecType     string `json:"codec_type"`
			Width, Height int
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return probed{}, err
	}
	var p probed
	for _, s := range doc.Streams {
		switch s.CodecType {
		case "video":
			p.video, p.width, p.height = true, s.Width, s.Height
		case "audio":
			p.audio = true
		}
	}
	return p, nil
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *mediaStack) status(t *testing.T, room string) int {
	t.Helper()
	return m.app.roomsByID(t)[room]
}

// The whole path: publishes refused without the room's auth_key, encoders publish to the
// rtmpUrls → push 9; a host–host call side by side → one ffmpeg job per host side, the mix
// stream has video of the layout's size and audio → push 5; a killed job is restarted and
// the mix flows again; close → jobs end, push 15, nothing left; an encoder stops → push 10.
func TestMediaFFmpegSideBySide(t *testing.T) {
	m := startMediaStack(t, nil)
	a, b := m.newRoom(t, "alice"), m.newRoom(t, "bob")

	// Only the room's own push URL publishes: nginx drops an encoder whose auth_key is
	// missing or wrong (the hook answers 403).
	base, _, _ := strings.Cut(a.pushURL, "?")
	for name, u := range map[string]string{"missing": base, "wrong": strings.Replace(a.pushURL, "-0-0-", "-0-1-", 1),
		"another room's": base + "?" + strings.SplitN(b.pushURL, "?", 2)[1]} {
		e := startEncoder(t, u, "testsrc", 440)
		select {
		case <-e.exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("an encoder with a %s auth_key was not disconnected", name)
		}
		assert.NotZero(t, e.cmd.ProcessState.ExitCode(), "%s auth_key: the encoder failed", name)
	}
	assert.Zero(t, a.watch.count(9), "a refused publish pushes nothing")
	assert.Equal(t, 0, m.status(t, a.id))

	encA := startEncoder(t, a.pushURL, "testsrc", 440)
	encB := startEncoder(t, b.pushURL, "testsrc2", 660)
	waitFor(t, 20*time.Second, "push 9 for both rooms", func() bool { return a.watch.count(9) == 1 && b.watch.count(9) == 1 })
	assert.Equal(t, 1, m.status(t, a.id))

	require.Equal(t, 200, m.accept(t, a, b, "side_by_side"))
	waitFor(t, 40*time.Second, "push 5 on both host rooms", func() bool { return a.watch.count(5) == 1 && b.watch.count(5) == 1 })
	// Push 5's play URLs follow media.playUrl.flv (RTMP here: nginx-rtmp has no HTTP-FLV).
	five := a.watch.last(5)
	assert.Equal(t, []any{m.rtmp() + "/" + a.id + "_mix"}, five["inviterMixPlayUrls"])
	assert.Equal(t, []any{m.rtmp() + "/" + b.id + "_mix"}, five["inviteeMixPlayUrls"])
	jobs := m.mixJobs()
	require.Len(t, jobs, 2, "one ffmpeg per mixed stream: %v", jobs)
	outputs := slices.Sorted(func(yield func(string) bool) {
		for _, o := range jobs {
			if !yield(strings.SplitN(o, "?", 2)[0]) {
				return
			}
		}
	})
	assert.Equal(t, slices.Sorted(slices.Values([]string{m.rtmp() + "/" + a.id + "_mix", m.rtmp() + "/" + b.id + "_mix"})), outputs)
	for _, o := range jobs {
		assert.Contains(t, o, "?auth_key=", "the mix is published signed")
	}
	got, err := probe(five["inviterMixPlayUrls"].([]any)[0].(string))
	require.NoError(t, err)
	assert.Equal(t, probed{video: true, width: 2 * 160, height: mediaHeight, audio: true}, got,
		"side by side: both sources at the mix's height, next to each other, and audio")
	// The room object's HLS URL (media.playUrl.hls) serves the mix from nginx.
	var listed []struct {
		M3U8PlayURL string `json:"m3u8PlayUrl"`
	}
	require.NoError(t, json.Unmarshal(m.app.call(t, "/live/list", url.Values{"roomId": {a.id}}), &listed))
	require.Len(t, listed, 1)
	require.Equal(t, fmt.Sprintf("http://127.0.0.1:%d/hls/%s_mix.m3u8", m.statPort, a.id), listed[0].M3U8PlayURL)
	eventually(t, 15*time.Second, "the mix's HLS playlist", func() error {
		res, err := client.Get(listed[0].M3U8PlayURL)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || !strings.HasPrefix(string(body), "#EXTM3U") {
			return fmt.Errorf("HTTP %d %q", res.StatusCode, body)
		}
		return nil
	})

	// A job killed mid-call is restarted and the mix flows again; nothing else is pushed.
	var victim int
	for pid, o := range jobs {
		if strings.Contains(o, "/"+a.id+"_mix") {
			victim = pid
		}
	}
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	waitFor(t, 20*time.Second, "a new job for the killed one", func() bool {
		now := m.mixJobs()
		_, old := now[victim]
		return len(now) == 2 && !old
	})
	eventually(t, 30*time.Second, "the mix flowing again", func() error {
		p, err := probe(m.rtmp() + "/" + a.id + "_mix")
		if err == nil && !(p.video && p.audio) {
			err = fmt.Errorf("probed %+v", p)
		}
		return err
	})
	assert.Zero(t, a.watch.count(14), "a restart is no failure")

	// Close: the jobs end (SIGTERM), push 15, nothing left running or unreaped.
	m.app.call(t, "/videocall/close", url.Values{"closeRoomId": {a.id}, "notifiedRoomId": {b.id}})
	waitFor(t, 15*time.Second, "push 15 on both host rooms", func() bool { return a.watch.count(15) == 1 && b.watch.count(15) == 1 })
	waitFor(t, 10*time.Second, "no ffmpeg job left", func() bool { return len(m.mixJobs()) == 0 })
	assert.Zero(t, zombiesOf(m.app.cmd.Process.Pid), "every job was reaped")

	// An encoder that stops → push 10; the other room keeps publishing.
	encB.stop()
	waitFor(t, 15*time.Second, "push 10 for the stopped encoder", func() bool { return b.watch.count(10) == 1 })
	assert.Equal(t, 0, m.status(t, b.id))
	assert.Zero(t, a.watch.count(10))
	encA.stop()
}

// kill -9 of the server mid-call: its jobs die with it (parent-death signal), the restarted
// server kills what a previous run left and resumes the call's mixes (picture-in-picture:
// the host's size); killing a job beyond its restart budget gives the mix up (push 14);
// ffmpeg.maxJobs refuses a call whose mixes cannot run (503); closing leaves nothing.
func TestMediaFFmpegKillNineAndRestartBudget(t *testing.T) {
	m := startMediaStack(t, nil, "APPSERVER_FFMPEG_MAXRESTARTS=1", "APPSERVER_FFMPEG_MAXJOBS=2")
	a, b := m.newRoom(t, "carol"), m.newRoom(t, "dave")
	startEncoder(t, a.pushURL, "testsrc", 440)
	startEncoder(t, b.pushURL, "testsrc2", 660)
	waitFor(t, 20*time.Second, "push 9 for both rooms", func() bool { return a.watch.count(9) == 1 && b.watch.count(9) == 1 })
	require.Equal(t, 200, m.accept(t, a, b, "picture_in_picture"))
	waitFor(t, 40*time.Second, "push 5", func() bool { return a.watch.count(5) == 1 && b.watch.count(5) == 1 })
	got, err := probe(m.rtmp() + "/" + b.id + "_mix")
	require.NoError(t, err)
	assert.Equal(t, probed{video: true, width: 160, height: mediaHeight, audio: true}, got,
		"picture-in-picture: the host's picture, the guest's inside it, and audio")

	// Every job slot is taken: another accept is refused with 503 and leaves nothing behind.
	c, d := m.newRoom(t, "erin"), m.newRoom(t, "frank")
	assert.Equal(t, 503, m.accept(t, c, d, "side_by_side"), "beyond ffmpeg.maxJobs")
	assert.Len(t, m.mixJobs(), 2)

	// kill -9: no job outlives the server.
	before := m.mixJobs()
	require.Len(t, before, 2)
	require.NoError(t, m.app.cmd.Process.Signal(syscall.SIGKILL))
	_ = m.app.cmd.Wait()
	waitFor(t, 5*time.Second, "the jobs gone with the server", func() bool { return len(m.mixJobs()) == 0 })

	// The restarted server resumes the call: its mixes flow again.
	m.app = start(t, m.bin, m.port, m.env...)
	a.watch, b.watch = watchTopic(t, m.app.base, a.id), watchTopic(t, m.app.base, b.id)
	waitFor(t, 20*time.Second, "the call's two jobs running again", func() bool { return len(m.mixJobs()) == 2 })
	eventually(t, 30*time.Second, "the resumed mix flowing", func() error {
		p, err := probe(m.rtmp() + "/" + a.id + "_mix")
		if err == nil && !(p.video && p.audio) {
			err = fmt.Errorf("probed %+v", p)
		}
		return err
	})
	var rooms []struct {
		RoomID  string `json:"roomId"`
		IsMixed bool   `json:"isMixed"`
	}
	require.NoError(t, json.Unmarshal(m.app.call(t, "/live/list", url.Values{"roomId": {a.id}}), &rooms))
	require.Len(t, rooms, 1)
	assert.True(t, rooms[0].IsMixed, "still mixed after the restart")

	// Beyond the restart budget (1): the first kill is restarted, the second gives up → 14.
	killJobOf := func(room string) int {
		t.Helper()
		for pid, o := range m.mixJobs() {
			if strings.Contains(o, "/"+room+"_mix") {
				require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
				return pid
			}
		}
		t.Fatalf("no job for %s", room)
		return 0
	}
	first := killJobOf(a.id)
	waitFor(t, 20*time.Second, "the killed job restarted", func() bool {
		for pid, o := range m.mixJobs() {
			if pid != first && strings.Contains(o, "/"+a.id+"_mix") {
				return true
			}
		}
		return false
	})
	assert.Zero(t, a.watch.count(14))
	killJobOf(a.id)
	waitFor(t, 15*time.Second, "push 14 on both host rooms", func() bool { return a.watch.count(14) == 1 && b.watch.count(14) == 1 })
	assert.EqualValues(t, 3000, a.watch.last(14)["message"].(map[string]any)["code"])
	waitFor(t, 5*time.Second, "only the other side's job left", func() bool { return len(m.mixJobs()) == 1 })

	m.app.call(t, "/videocall/close", url.Values{"closeRoomId": {b.id}, "notifiedRoomId": {a.id}})
	waitFor(t, 15*time.Second, "push 15", func() bool { return a.watch.count(15) == 1 && b.watch.count(15) == 1 })
	waitFor(t, 10*time.Second, "nothing left running", func() bool { return len(m.mixJobs()) == 0 })
	assert.Zero(t, zombiesOf(m.app.cmd.Process.Pid))
}

// A publish_done that never arrives (nginx's hook fails) is found by the reconciliation of
// nginx-rtmp's /stat: the room stops publishing (status 0, push 10) within two intervals.
func TestMediaReconcileMissedPublishDone(t *testing.T) {
	dead := freePort(t) // nothing listens there: the on_publish_done hook fails
	m := startMediaStack(t, map[string]string{
		"on_publish_done http://127.0.0.1:4000/": fmt.Sprintf("on_publish_done http://127.0.0.1:%d/", dead),
	}, "APPSERVER_LIVE_RECONCILEINTERVAL=1s")
	a := m.newRoom(t, "grace")
	enc := startEncoder(t, a.pushURL, "testsrc", 440)
	waitFor(t, 20*time.Second, "push 9", func() bool { return a.watch.count(9) == 1 })
	// A few reconciliations see the stream listed and change nothing.
	polls := func() int { return metricValue(t, m.app.base, `roomengine_media_reconcile_polls_total{result="ok"}`) }
	after := polls() + 3
	waitFor(t, 10*time.Second, "three more reconciliations", func() bool { return polls() >= after })
	assert.Zero(t, a.watch.count(10), "a listed stream is left alone")
	enc.kill()
	killed := time.Now()
	waitFor(t, 10*time.Second, "push 10 from the reconciliation", func() bool { return a.watch.count(10) == 1 })
	took := time.Since(killed)
	t.Logf("missed publish_done applied %v after the encoder was killed", took.Round(time.Millisecond))
	assert.Less(t, took, 2*time.Second+2*time.Second, "within two intervals (plus nginx noticing the dropped encoder)")
	assert.Equal(t, 0, m.status(t, a.id))
	assert.Equal(t, 1, metricValue(t, m.app.base, "roomengine_media_reconciled_total"))
}

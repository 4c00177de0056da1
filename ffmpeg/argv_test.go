package ffmpeg

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"roomengine/actors"
)

var testOutput = Output{Height: 120, FPS: 10, VideoBitrate: "150k", AudioBitrate: "32k"}

// The argv pulls both rooms, composes them as the layout says, mixes the audio and
// publishes one FLV stream: each value its own argument, never a shell string.
func TestArgsByLayout(t *testing.T) {
	for name, tc := range map[string]struct {
		layout string
		graph  []string // parts of the filter graph, in order
	}{
		LayoutSideBySide: {LayoutSideBySide, []string{"[0:v]scale=-2:120", "[1:v]scale=-2:120", "hstack=inputs=2", "amix=inputs=2"}},
		LayoutPictureInPicture: {LayoutPictureInPicture, []string{"[0:v]scale=-2:120", "[1:v]scale=-2:30",
			"overlay=W-w-2:H-h-2", "amix=inputs=2"}},
		"unknown: picture-in-picture": {"mosaic", []string{"[1:v]scale=-2:30", "overlay="}},
	} {
		t.Run(name, func(t *testing.T) {
			a := args("rtmp://play/App/aaaa", "rtmp://play/App/bbbb", "rtmp://push/App/aaaa_mix?auth_key=1-0-0-x", tc.layout, testOutput)
			inputs := []string{}
			for i, v := range a {
				if v == "-i" {
					inputs = append(inputs, a[i+1])
				}
			}
			if !slices.Equal(inputs, []string{"rtmp://play/App/aaaa", "rtmp://play/App/bbbb"}) {
				t.Fatalf("inputs %v: the host's room first", inputs)
			}
			if a[len(a)-1] != "rtmp://push/App/aaaa_mix?auth_key=1-0-0-x" || a[len(a)-3] != "-f" || a[len(a)-2] != "flv" {
				t.Fatalf("output: %v", a[len(a)-3:])
			}
			graph := a[slices.Index(a, "-filter_complex")+1]
			at := 0
			for _, part := range tc.graph {
				i := strings.Index(graph[at:], part)
				if i < 0 {
					t.Fatalf("filter graph %q lacks %q after position %d", graph, part, at)
				}
				at += i
			}
			for _, v := range []string{"-b:v", "150k", "-b:a", "32k", "-g", "10", "[v]", "[a]"} {
				if !slices.Contains(a, v) {
					t.Errorf("argv lacks %q: %v", v, a)
				}
			}
		})
	}
}

// Only stream names that cannot change the URL or ffmpeg's options reach the command line.
func TestStartRefusesUnsafeStreamNames(t *testing.T) {
	m, err := New(Config{Binary: "ffmpeg", AppName: "App", TemplateName: "_mix", MaxJobs: 1, Output: testOutput,
		RestartWindow: time.Minute, RestartBackoff: time.Second, StopGrace: time.Second, StallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a/b", "a?x=1", "-i", "a b", "a;rm", strings.Repeat("a", 65), "ä"} {
		_, err := m.StartMix(t.Context(), actors.MixRequest{MainStream: bad, MixStream: "ok"})
		var e *actors.Error
		if err == nil || !errors.As(err, &e) || e.Code != actors.CodeMixInvalidArg {
			t.Errorf("main %q: %v, want a 3400", bad, err)
		}
		if m.Jobs() != 0 {
			t.Fatalf("main %q started a job", bad)
		}
	}
	if _, err := New(Config{AppName: "App", TemplateName: "_mix&x=1"}); err == nil {
		t.Error("a template name that is no stream name is refused at start")
	}
}

// The supervisor reads how much ffmpeg wrote from its -progress blocks, however the pipe
// splits them.
func TestProgressWriter(t *testing.T) {
	p := &progressWriter{}
	for _, chunk := range []string{"frame=1\ntotal_si", "ze=1024\nprogress=continue\n", "total_size=N/A\n", "total_size=70000\n"} {
		_, _ = p.Write([]byte(chunk))
		if chunk == "ze=1024\nprogress=continue\n" && p.size.Load() != 1024 {
			t.Fatalf("size %d after a split line", p.size.Load())
		}
	}
	if p.size.Load() != 70000 {
		t.Fatalf("size %d", p.size.Load())
	}
}

package ffmpeg

import (
	"fmt"
	"regexp"
	"strconv"
)

// Layouts of a call (the invitation's type), as the CDN mix templates are named.
const (
	LayoutSideBySide       = "side_by_side"
	LayoutPictureInPicture = "picture_in_picture"
)

// streamName is what a room id or template suffix may be before it becomes part of an RTMP
// URL on ffmpeg's command line: nothing that could end the path, start a query or an option.
var streamName = regexp.MustCompile(`^[0-9A-Za-z_]{1,64}$`)

// validStream reports whether s may be used as (part of) a stream name in a URL.
func validStream(s string) bool { return streamName.MatchString(s) }

// Output describes the composed stream one job produces.
type Output struct {
	Height, FPS                int
	VideoBitrate, AudioBitrate string
}

// args is the ffmpeg argv (without the program name) that pulls main and partner, composes
// them in layout and publishes to out. Every element is a separate argument: no shell ever
// sees it, and the only client-chosen parts (room ids) are validated before they get here.
func args(mainURL, partnerURL, outURL, layout string, o Output) []string {
	a := []string{"-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats",
		// key=value progress blocks on stdout: how the supervisor sees the output advance.
		"-progress", "pipe:1"}
	for _, in := range []string{mainURL, partnerURL} {
		// rw_timeout (µs): a source that stops sending ends ffmpeg instead of hanging it.
		// analyzeduration (µs): a live stream's first second tells its codecs; the default
		// 5 s per input would delay every mix by 10 s.
		a = append(a, "-analyzeduration", "1000000", "-rw_timeout", "10000000", "-i", in)
	}
	gop := strconv.Itoa(o.FPS) // a keyframe a second: a player joining the mix starts within one
	return append(a,
		"-filter_complex", filterGraph(layout, o.Height, o.FPS),
		"-map", "[v]", "-map", "[a]",
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
		"-g", gop, "-b:v", o.VideoBitrate, "-maxrate", o.VideoBitrate, "-bufsize", o.VideoBitrate,
		"-c:a", "aac", "-b:a", o.AudioBitrate, "-ar", "44100",
		"-f", "flv", outURL)
}

// filterGraph composes input 0 (the host whose mix this is) and input 1 (the partner):
// side by side, both scaled to height h; picture-in-picture, the partner scaled to a quarter
// of h in the bottom-right corner over the host scaled to h. The audio of both is mixed.
func filterGraph(layout string, h, fps int) string {
	const audio = "[0:a][1:a]amix=inputs=2:duration=longest:dropout_transition=0[a]"
	if layout == LayoutSideBySide {
		return fmt.Sprintf("[0:v]scale=-2:%[1]d,setsar=1,fps=%[2]d[l];[1:v]scale=-2:%[1]d,setsar=1,fps=%[2]d[r];"+
			"[l][r]hstack=inputs=2,format=yuv420p[v];%[3]s", h, fps, audio)
	}
	small := max(2, h/4&^1)
	margin := max(2, h/40&^1)
	return fmt.Sprintf("[0:v]scale=-2:%[1]d,setsar=1,fps=%[2]d[bg];[1:v]scale=-2:%[3]d,setsar=1,fps=%[2]d[fg];"+
		"[bg][fg]overlay=W-w-%[4]d:H-h-%[4]d:eof_action=pass,format=yuv420p[v];%[5]s", h, fps, small, margin, audio)
}

package main

import (
	"context"
	"net"
	"path/filepath"
	"time"

	"roomengine/actors"
	"roomengine/ffmpeg"
	apihttp "roomengine/http"
)

// newFFmpegMixer builds mix: ffmpeg from the ffmpeg.* keys and the stream URL keys. A mix
// it gives up on becomes a failed mix event of its call (push 14), as a CDN's would.
func (a *app) newFFmpegMixer() (*ffmpeg.Mixer, error) {
	c, f := a.cfg, a.cfg.FFmpeg
	return ffmpeg.New(ffmpeg.Config{
		Binary: f.Path, PlayHost: c.PlayHost, RtmpHost: c.RtmpHost, AppName: c.AppName,
		TemplateName: c.Videocall.TemplateName, AuthKey: c.AuthKey,
		Output:  ffmpeg.Output{Height: f.Height, FPS: f.FPS, VideoBitrate: f.VideoBitrate, AudioBitrate: f.AudioBitrate},
		MaxJobs: f.MaxJobs, MaxRestarts: f.MaxRestarts, RestartWindow: f.RestartWindow,
		RestartBackoff: f.RestartBackoff, StopGrace: f.StopGrace, StallTimeout: f.StallTimeout,
		StateDir:  filepath.Join(c.DataDir, "ffmpeg"),
		Logger:    a.log.With("component", "ffmpeg"),
		OnFailure: a.mixFailed,
	})
}

// mixFailed reports a mix the mixer gave up on to its call: push 14, mixedStatus 0.
func (a *app) mixFailed(mainRoom, message string) {
	go func() {
		select {
		case <-a.engineReady:
		case <-time.After(time.Minute):
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := a.engine.MixEvent(ctx, actors.MixEvent{MainRoom: mainRoom, Event: "MixFailed", Code: "FFmpegFailed",
			Message: message, Failed: true, ErrCode: actors.CodeMixFailed})
		if err != nil {
			a.log.Warn("failed mix not reported to its call", "room", mainRoom, "err", err)
		}
	}()
}

// mediaHooks configures /media/nginx-rtmp and /media/srs.
func (a *app) mediaHooks() apihttp.MediaHooks {
	h := apihttp.MediaHooks{Secret: a.cfg.Media.HookSecret, AppName: a.cfg.AppName, AuthKey: a.cfg.AuthKey}
	for _, cidr := range a.cfg.Media.HookAllow {
		if _, n, err := net.ParseCIDR(cidr); err == nil { // validated by config
			h.Allow = append(h.Allow, n)
		}
	}
	if a.ffmpeg != nil {
		h.Outputs = a.ffmpeg
	}
	return h
}

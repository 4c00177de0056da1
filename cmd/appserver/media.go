package main

import (
	"context"
	"net"
	nethttp "net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/actors"
	"roomengine/aliyun"
	"roomengine/ffmpeg"
	apihttp "roomengine/http"
	"roomengine/mediaserver"
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

// newReconciler starts the stream reconciliation of live.reconcileInterval when a media
// server's stream list is configured (media.statUrl, media.srsApiUrl).
func (a *app) newReconciler(reg prometheus.Registerer) *mediaserver.Reconciler {
	client := &nethttp.Client{Timeout: a.cfg.Live.ReconcileInterval}
	var listers []mediaserver.Lister
	if u := a.cfg.Media.StatURL; u != "" {
		listers = append(listers, mediaserver.NginxStat{URL: u, Client: client})
	}
	if u := a.cfg.Media.SRSAPIURL; u != "" {
		listers = append(listers, mediaserver.SRSAPI{URL: u, Client: client})
	}
	if a.cfg.Live.ReconcileAliyun {
		l, err := a.aliyunLister()
		if err != nil {
			a.log.Error("Aliyun stream reconciliation off", "err", err)
		} else {
			listers = append(listers, l)
		}
	}
	if len(listers) == 0 {
		return nil
	}
	unknown := prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomengine_media_unknown_streams",
		Help: "Streams the media server publishes for no known room (at the last reconciliation)."})
	applied := prometheus.NewCounter(prometheus.CounterOpts{Name: "roomengine_media_reconciled_total",
		Help: "Missed publish_done notifications the stream reconciliation applied."})
	polls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roomengine_media_reconcile_polls_total",
		Help: "Stream reconciliations run; result=failed when a stream list or the rooms could not be read."}, []string{"result"})
	reg.MustRegister(unknown, applied, polls)
	r := &mediaserver.Reconciler{Engine: a.engine, Listers: listers, App: a.cfg.AppName,
		TemplateName: a.cfg.Videocall.TemplateName, Interval: a.cfg.Live.ReconcileInterval,
		Logger:    a.log.With("component", "reconcile"),
		OnUnknown: func(n int) { unknown.Set(float64(n)) }, OnApplied: func(string) { applied.Inc() },
		OnPoll: func(complete bool) {
			if complete {
				polls.WithLabelValues("ok").Inc()
			} else {
				polls.WithLabelValues("failed").Inc()
			}
		}}
	r.Start()
	return r
}

// aliyunStreams lists Aliyun's online streams for the reconciliation.
type aliyunStreams struct{ client *aliyun.LiveClient }

func (a aliyunStreams) Name() string { return "aliyun" }
func (a aliyunStreams) Streams(ctx context.Context, app string) (map[string]bool, error) {
	return a.client.OnlineStreams(ctx, app)
}

// aliyunLister is DescribeLiveStreamsOnlineList on a Live API client of its own, so a failed
// poll does not count against the mix's circuit breaker.
func (a *app) aliyunLister() (mediaserver.Lister, error) {
	ali := a.cfg.Ali
	c, err := aliyun.NewLiveClient(aliyun.LiveConfig{
		URL: ali.URLs.Live.URL, Version: ali.URLs.Live.Version, Region: ali.LiveRegion,
		AccessKeyID: ali.AccessKeyID, AccessKeySecret: ali.AccessKeySecret,
		AppName: a.cfg.AppName, PlayHost: a.cfg.PlayHost, TemplateName: a.cfg.Videocall.TemplateName,
		Timeout: ali.Timeout, BreakerOpenTimeout: ali.BreakerOpenTimeout,
		Logger: a.log.With("component", "reconcile-aliyun"),
	})
	if err != nil {
		return nil, err
	}
	return aliyunStreams{client: c}, nil
}

package http

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"roomengine/actors"
	"roomengine/aliyun"
)

// The publish hooks of a self-hosted media server (docs/self-hosted.md). Both map to the
// very same room events as Aliyun's /ali/stream/notify: publish and publish_done.
const (
	nginxRTMPRoute = "/media/nginx-rtmp"
	srsRoute       = "/media/srs"
)

// MediaHooks configure the publish hooks.
type MediaHooks struct {
	// Secret (media.hookSecret), when set, must be the hook URL's secret query parameter.
	Secret string
	// Allow (media.hookAllow), when set, lists the networks hooks may come from.
	Allow []*net.IPNet
	// AppName is the media server application rooms publish to; a publish elsewhere is refused.
	AppName string
	// AuthKey (authKey), when set, is what every publish's auth_key must be signed with.
	AuthKey string
	// Outputs learns when a mix job's output is published (mix: ffmpeg); nil otherwise.
	Outputs MixOutputs
}

// MixOutputs is the mixer side of the hooks: a job's output stream (room + template) was
// published or stopped. Each reports whether this server runs that job.
type MixOutputs interface {
	OutputPublished(stream string) bool
	OutputDone(stream string) bool
}

// mediaEvent is one publish or publish_done, whichever server sent it.
type mediaEvent struct {
	publish bool
	app     string
	stream  string
	authKey string
}

// nginxRTMPHook serves nginx-rtmp's on_publish and on_publish_done (form body: call, name,
// app, addr, clientid, tcurl and the stream URL's own arguments such as auth_key). A 2xx
// accepts; nginx drops the encoder on any other status.
func (h *Handler) nginxRTMPHook() httprouter.Handle {
	metrics := h.metrics.forRoute(nginxRTMPRoute)
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		defer func() { h.trace(r, nginxRTMPRoute, rec.code, time.Since(start), metrics) }()
		if err := h.checkHook(r); err != nil {
			refuseHook(rec, err)
			return
		}
		r.Body = http.MaxBytesReader(rec, r.Body, h.opts.MaxBodyBytes)
		if err := r.ParseForm(); err != nil {
			refuseHook(rec, badHookBody(err))
			return
		}
		h.setReadDeadline(w, time.Time{})
		var ev mediaEvent
		switch r.PostForm.Get("call") {
		case "publish":
			ev.publish = true
		case "publish_done":
		default:
			// on_play, on_done, on_record_done…: nothing to do, nothing to refuse.
			writeOK(rec, nil)
			return
		}
		ev.app, ev.stream, ev.authKey = r.PostForm.Get("app"), r.PostForm.Get("name"), r.PostForm.Get("auth_key")
		if err := h.applyMediaEvent(r.Context(), ev); err != nil {
			refuseHook(rec, err)
			return
		}
		writeOK(rec, nil)
	}
}

// srsRequest is the JSON body of an SRS HTTP callback (its client_id is a number before
// SRS 5 and a string since).
type srsRequest struct {
	Action   string          `json:"action"`
	ClientID json.RawMessage `json:"client_id"`
	IP       string          `json:"ip"`
	Vhost    string          `json:"vhost"`
	App      string          `json:"app"`
	Stream   string          `json:"stream"`
	Param    string          `json:"param"`
}

// srsHook serves SRS's on_publish and on_unpublish: HTTP 200 with the body 0 accepts;
// anything else makes SRS refuse the publish.
func (h *Handler) srsHook() httprouter.Handle {
	metrics := h.metrics.forRoute(srsRoute)
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		defer func() { h.trace(r, srsRoute, rec.code, time.Since(start), metrics) }()
		if err := h.checkHook(r); err != nil {
			refuseHook(rec, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(rec, r.Body, h.opts.MaxBodyBytes))
		h.setReadDeadline(w, time.Time{})
		if err != nil {
			refuseHook(rec, badHookBody(err))
			return
		}
		var req srsRequest
		if err := json.Unmarshal(body, &req); err != nil {
			refuseHook(rec, actors.Errorf(actors.CodeMissingParam, "SRS回调的JSON无法解析"))
			return
		}
		ev := mediaEvent{app: req.App, stream: req.Stream}
		switch req.Action {
		case "on_publish":
			ev.publish = true
		case "on_unpublish":
		case "":
			refuseHook(rec, errMissing("action"))
			return
		default:
			acceptSRS(rec) // on_connect, on_play, on_dvr…: nothing to do
			return
		}
		if args, err := url.ParseQuery(strings.TrimPrefix(req.Param, "?")); err == nil {
			ev.authKey = args.Get("auth_key")
		}
		if err := h.applyMediaEvent(r.Context(), ev); err != nil {
			refuseHook(rec, err)
			return
		}
		acceptSRS(rec)
	}
}

var srsAccept = []byte("0")

func acceptSRS(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(srsAccept)
}

// applyMediaEvent applies a publish or publish_done. It returns an error only to refuse a
// publish: an unknown or ended room, an app other than appName, a missing, wrong or expired
// auth_key while authKey is set, or a store that cannot record it. publish_done is never
// refused (the stream is gone either way) and, like Aliyun's, idempotent.
func (h *Handler) applyMediaEvent(ctx context.Context, ev mediaEvent) error {
	m := h.opts.Media
	if ev.stream == "" {
		if ev.publish {
			return errMissing("name")
		}
		return nil
	}
	if ev.publish && m.AppName != "" && ev.app != m.AppName {
		return hookError{status: http.StatusNotFound, err: actors.Errorf(actors.CodeNoSuchRoom, "应用 %q 不是直播应用", ev.app)}
	}
	if ev.publish && m.AuthKey != "" {
		if err := aliyun.CheckAuthKeyA("/"+ev.app+"/"+ev.stream, ev.authKey, m.AuthKey, h.opts.Now()); err != nil {
			return actors.Errorf(actors.CodeForbidden, "推流鉴权失败: %v", err)
		}
	}
	if room, ok := h.mixOutputRoom(ev.stream); ok {
		// The mixer's own output: accepted (it is signed like any push when authKey is set);
		// its publish is how the mixer learns the mix flows.
		recognised := false
		if m.Outputs != nil {
			if ev.publish {
				recognised = m.Outputs.OutputPublished(ev.stream)
			} else {
				recognised = m.Outputs.OutputDone(ev.stream)
			}
		}
		h.log.Info("mix output stream", "room", room, "publish", ev.publish, "ownJob", recognised)
		return nil
	}
	if !ev.publish {
		err := h.opts.Engine.StreamPublishDone(ctx, ev.stream)
		if err != nil {
			h.log.Warn("publish_done not applied", "room", ev.stream, "err", err)
		}
		return nil
	}
	room, err := h.opts.Engine.Room(ctx, ev.stream)
	var domain *actors.Error
	switch {
	case errors.As(err, &domain) && domain.Code == actors.CodeNoSuchRoom:
		return hookError{status: http.StatusNotFound, err: domain}
	case err != nil:
		return err
	case room.Ended():
		return hookError{status: http.StatusNotFound, err: actors.ErrNoSuchRoom(ev.stream)}
	}
	return h.opts.Engine.StreamPublished(ctx, ev.stream)
}

// mixOutputRoom reports whether stream is a mix's output (a room id plus the template
// suffix) and the room it mixes for.
func (h *Handler) mixOutputRoom(stream string) (string, bool) {
	t := h.opts.TemplateName
	if t == "" {
		return "", false
	}
	room, ok := strings.CutSuffix(stream, t)
	return room, ok && room != ""
}

// checkHook authenticates a hook request: media.hookSecret as the secret query parameter
// (constant-time), the client address within media.hookAllow. Each applies when set.
func (h *Handler) checkHook(r *http.Request) error {
	m := h.opts.Media
	if m.Secret != "" {
		got := r.URL.Query().Get("secret")
		if subtle.ConstantTimeCompare([]byte(got), []byte(m.Secret)) != 1 {
			h.log.Warn("media hook refused: wrong or missing secret", "remote", r.RemoteAddr)
			return actors.Errorf(actors.CodeForbidden, "媒体服务器回调密钥错误")
		}
	}
	if len(m.Allow) > 0 {
		ip := net.ParseIP(clientIP(r))
		allowed := false
		for _, n := range m.Allow {
			allowed = allowed || (ip != nil && n.Contains(ip))
		}
		if !allowed {
			h.log.Warn("media hook refused: address not in media.hookAllow", "remote", r.RemoteAddr)
			return actors.Errorf(actors.CodeForbidden, "媒体服务器回调来源不在允许范围")
		}
	}
	return nil
}

// hookError is a refusal with its own HTTP status (a hook's status is what the media
// server reads, unlike an API answer's envelope code).
type hookError struct {
	status int
	err    *actors.Error
}

func (e hookError) Error() string { return e.err.Error() }

func badHookBody(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return hookError{status: http.StatusRequestEntityTooLarge, err: actors.Errorf(actors.CodeTooLarge, "请求体过大")}
	}
	return actors.Errorf(actors.CodeMissingParam, "回调请求体无法读取")
}

// refuseHook answers a refusal with a non-2xx status and the envelope: 403 for credentials,
// 404 for a room that is not live, 400 for a bad body, 503 for a store that cannot answer.
func refuseHook(w http.ResponseWriter, err error) {
	var he hookError
	if errors.As(err, &he) {
		writeEnvelope(w, he.status, envelope{Code: he.err.Code, Message: he.err.Message})
		return
	}
	var domain *actors.Error
	if !errors.As(err, &domain) {
		domain = actors.Errorf(actors.CodeInternal, "系统异常")
	}
	status := http.StatusBadRequest
	switch domain.Code {
	case actors.CodeForbidden, actors.CodeUnauthorized:
		status = http.StatusForbidden
	case actors.CodeNoSuchRoom:
		status = http.StatusNotFound
	case actors.CodeUnavailable:
		status = http.StatusServiceUnavailable
	case actors.CodeInternal:
		status = http.StatusInternalServerError
	}
	writeEnvelope(w, status, envelope{Code: domain.Code, Message: domain.Message})
}

package http

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"roomengine/actors"
	"roomengine/docs"
)

// Length limits on free text, so a single request cannot store or broadcast megabytes.
const (
	maxNameLen    = 128
	maxDescLen    = 500
	maxCommentLen = 2000
)

type loginData struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Token string `json:"token,omitempty"`
}

func (h *Handler) login(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("name")
	if err != nil {
		return nil, err
	}
	if err := p.maxLen("name", maxNameLen); err != nil {
		return nil, err
	}
	if err := p.checkText("name"); err != nil {
		return nil, err
	}
	u, err := h.opts.Engine.Login(ctx, v[0])
	if err != nil {
		return nil, err
	}
	data := loginData{ID: u.ID, Name: u.Name}
	if h.opts.Tokens != nil {
		data.Token = h.opts.Tokens.Issue(u.ID)
	}
	return data, nil
}

func (h *Handler) roomUsers(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("roomId")
	if err != nil {
		return nil, err
	}
	return h.opts.Engine.Audience(ctx, v[0])
}

func (h *Handler) createLive(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("uid")
	if err != nil {
		return nil, err
	}
	if err := p.maxLen("desc", maxDescLen); err != nil {
		return nil, err
	}
	if err := p.checkText("desc"); err != nil {
		return nil, err
	}
	room, err := h.opts.Engine.CreateRoom(ctx, v[0], p.get("desc"))
	if err != nil {
		return nil, err
	}
	return actors.ViewOf(room, h.opts.URLs), nil
}

func (h *Handler) play(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("roomId", "uid")
	if err != nil {
		return nil, err
	}
	room, viewer, err := h.opts.Engine.Play(ctx, v[0], v[1])
	if err != nil {
		return nil, err
	}
	return actors.PlayViewOf(room, viewer, h.opts.URLs), nil
}

func (h *Handler) audienceLeave(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("roomId", "uid")
	if err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.AudienceLeave(ctx, v[0], v[1])
}

func (h *Handler) leave(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("roomId")
	if err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.Leave(ctx, v[0])
}

func (h *Handler) comment(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("uid", "roomId", "comment")
	if err != nil {
		return nil, err
	}
	if err := p.maxLen("comment", maxCommentLen); err != nil {
		return nil, err
	}
	if err := p.checkText("comment"); err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.Comment(ctx, v[1], v[0], p["comment"])
}

func (h *Handler) like(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("uid", "roomId")
	if err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.Like(ctx, v[1], v[0])
}

func (h *Handler) list(ctx context.Context, p params, r *http.Request) (any, error) {
	q := actors.ListQuery{RoomID: p.get("roomId")}
	var err error
	if q.Offset, err = nonNegative(p, "offset"); err != nil {
		return nil, err
	}
	if q.Limit, err = nonNegative(p, "limit"); err != nil {
		return nil, err
	}
	data, err := h.opts.Engine.List(ctx, q)
	if err != nil {
		return nil, err
	}
	if data, err = h.listFor(r, p, data); err != nil {
		return nil, err
	}
	return rawJSON(data), nil
}

// nonNegative parses an optional non-negative integer parameter (0 when absent). A valid
// integer too large for an int is clamped to the largest int: a limit that big means all
// rooms, an offset that big is past the end (an empty list).
func nonNegative(p params, name string) (int, error) {
	s := p.get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if errors.Is(err, strconv.ErrRange) && n > 0 {
		return math.MaxInt, nil // Atoi saturates: n is math.MaxInt
	}
	if err != nil || n < 0 {
		return 0, &badInput{msg: name + "必须是非负整数"}
	}
	return n, nil
}

func (h *Handler) reset(ctx context.Context, p params, r *http.Request) (any, error) {
	if err := h.checkAdmin(r); err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.Reset(ctx, p.get("key"))
}

// streamNotify is Aliyun's publish / publish_done callback. Unknown streams and actions are
// answered with success so Aliyun does not retry them forever.
func (h *Handler) streamNotify(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("id")
	if err != nil {
		return nil, err
	}
	switch p.get("action") {
	case "publish":
		return nil, h.opts.Engine.StreamPublished(ctx, v[0])
	case "publish_done":
		return nil, h.opts.Engine.StreamPublishDone(ctx, v[0])
	}
	return nil, nil
}

// mixAvailable is Aliyun's MixAvailable callback: Stream is the room id plus the mix
// template suffix.
func (h *Handler) mixAvailable(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("Stream")
	if err != nil {
		return nil, err
	}
	roomID := strings.TrimSuffix(v[0], h.opts.TemplateName)
	return nil, h.opts.Engine.MixAvailable(ctx, roomID)
}

// mixStatus is Aliyun's MixResult callback: it sets mixedStatus on the call's rooms and
// pushes 16. Aliyun sends it with unencoded spaces in Message; the listener mends the
// request line before net/http parses it (see rawspace.go).
func (h *Handler) mixStatus(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("MainMixStream")
	if err != nil {
		return nil, err
	}
	n := actors.MixResultNotice{
		MainMixDomain: p.get("MainMixDomain"), MainMixApp: p.get("MainMixApp"), MainMixStream: v[0],
		MixDomain: p.get("MixDomain"), MixApp: p.get("MixApp"), MixStream: p.get("MixStream"),
		MixType: p.get("MixType"), MixTemplate: p.get("MixTemplate"), Event: p.get("Event"),
		Code: p.get("Code"), Message: p["Message"],
	}
	return nil, h.opts.Engine.MixResult(ctx, n, h.opts.TemplateName)
}

// openAPIJSON is docs/openapi.yaml as JSON, converted once.
var openAPIJSON = sync.OnceValues(docs.OpenAPIJSON)

// openAPI serves the API's OpenAPI document (docs/openapi.yaml) as JSON.
func (h *Handler) openAPI(w http.ResponseWriter, _ *http.Request) {
	body, err := openAPIJSON()
	if err != nil {
		h.log.Error("openapi document", "err", err)
		writeError(w, err)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

package http

import (
	"context"
	"net/http"
	"strconv"

	"roomengine/actors"
)

// Mix layouts a client may ask for (docs/api.md, /videocall/invite `type`).
var layouts = map[string]bool{"": true, "picture_in_picture": true, "side_by_side": true}

// memberType parses inviterType / inviteeType: 1 viewer, 2 host.
func memberType(p params, name string) (int, error) {
	v, err := p.require(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || (n != actors.TypeViewer && n != actors.TypeHost) {
		return 0, &badInput{msg: name + "必须是1（观众）或2（主播）"}
	}
	return n, nil
}

func layout(p params) (string, error) {
	l := p.get("type")
	if !layouts[l] {
		return "", &badInput{msg: "type必须是picture_in_picture或side_by_side"}
	}
	return l, nil
}

func (h *Handler) invite(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("inviterUid", "inviteeUid", "liveRoomId")
	if err != nil {
		return nil, err
	}
	inviterType, err := memberType(p, "inviterType")
	if err != nil {
		return nil, err
	}
	l, err := layout(p)
	if err != nil {
		return nil, err
	}
	return nil, h.opts.Engine.Invite(ctx, actors.InviteRequest{InviterUID: v[0], InviteeUID: v[1],
		LiveRoomID: v[2], InviterType: inviterType, Layout: l})
}

func (h *Handler) feedback(ctx context.Context, p params, _ *http.Request) (any, error) {
	v, err := p.require("status", "inviterUid", "inviteeUid")
	if err != nil {
		return nil, err
	}
	status, err := strconv.Atoi(v[0])
	if err != nil || (status != actors.FeedbackAccept && status != actors.FeedbackRefuse) {
		return nil, &badInput{msg: "status必须是1（接受）或2（拒绝）"}
	}
	inviterType, err := memberType(p, "inviterType")
	if err != nil {
		return nil, err
	}
	inviteeType := actors.TypeViewer
	if status == actors.FeedbackAccept || p.get("inviteeType") != "" {
		if inviteeType, err = memberType(p, "inviteeType"); err != nil {
			return nil, err
		}
	}
	l, err := layout(p)
	if err != nil {
		return nil, err
	}
	res, err := h.opts.Engine.Feedback(ctx, actors.FeedbackRequest{Status: status, InviterUID: v[1], InviteeUID: v[2],
		InviterType: inviterType, InviteeType: inviteeType, Layout: l})
	if err != nil || res == nil {
		return nil, err
	}
	return res, nil
}

func (h *Handler) closeCall(ctx context.Context, p params, _ *http.Request) (any, error) {
	// closeRooomId is how some old clients spell it.
	closeRoomID := p.first("closeRoomId", "closeRooomId")
	if closeRoomID == "" {
		return nil, errMissing("closeRoomId")
	}
	return nil, h.opts.Engine.CloseCall(ctx, closeRoomID, p.get("notifiedRoomId"))
}

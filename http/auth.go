package http

import (
	"context"
	"net/http"
	"strings"

	"roomengine/actors"
)

// With auth.required (docs/api.md, Security), every user route needs the token /login handed out
// (Authorization: Bearer <token>, or a token parameter), and a user may act only as itself.
// Who "itself" is depends on the route: the uid parameter, the inviter who invites, the
// invitee who answers, the host of the room that is left or whose call is closed.

// actingUser names the user a request acts as ("" = any signed-in user may make it).
type actingUser func(ctx context.Context, h *Handler, p params) string

func param(name string) actingUser {
	return func(_ context.Context, _ *Handler, p params) string { return p.get(name) }
}

// hostOf is the host of the room named by the first present parameter. An unknown room
// needs no particular user: the handler answers it with 2003 / 2002.
func hostOf(names ...string) actingUser {
	return func(ctx context.Context, h *Handler, p params) string {
		id := p.first(names...)
		if id == "" {
			return ""
		}
		room, err := h.opts.Engine.Room(ctx, id)
		if err != nil {
			return ""
		}
		return room.UID
	}
}

// anyUser lets every signed-in user make the request.
func anyUser(context.Context, *Handler, params) string { return "" }

// signedIn wraps a user route: without auth.required it changes nothing.
func (h *Handler) signedIn(as actingUser, fn apiFunc) apiFunc {
	if !h.opts.AuthRequired {
		return fn
	}
	return func(ctx context.Context, p params, r *http.Request) (any, error) {
		uid, err := h.tokenUser(r, p)
		if err != nil {
			return nil, err
		}
		if want := as(ctx, h, p); want != "" && want != uid {
			return nil, actors.Errorf(actors.CodeForbidden, "只能以自己的身份操作（令牌属于用户%s）", uid)
		}
		return fn(ctx, p, r)
	}
}

// bearerToken returns the credentials of an "Authorization: Bearer ..." header. The scheme
// is matched without regard to case (RFC 7235): some client libraries send "bearer".
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// tokenUser checks the request's token and returns its user.
func (h *Handler) tokenUser(r *http.Request, p params) (string, error) {
	token, ok := bearerToken(r)
	if !ok {
		token = p.get("token")
	}
	if token == "" {
		return "", actors.Errorf(actors.CodeUnauthorized, "需要登录令牌（Authorization: Bearer <token>）")
	}
	if h.opts.Tokens == nil {
		return "", actors.Errorf(actors.CodeUnauthorized, "登录令牌无效或已过期")
	}
	uid, err := h.opts.Tokens.Verify(strings.TrimSpace(token))
	if err != nil {
		return "", actors.Errorf(actors.CodeUnauthorized, "登录令牌无效或已过期")
	}
	return uid, nil
}

package http

import (
	"encoding/json"
	"net/http"
	"strings"

	"roomengine/actors"
)

// A room's rtmpUrl carries auth_key, the signature that lets whoever holds it push the
// room's stream. With auth.required only the room's host gets it (in /live/create, and in
// /live/list for its own rooms); everyone else gets the same URL without auth_key, which
// identifies the stream but cannot push to it. Without auth.required there is no caller to
// tell apart and the old server's answers are kept.

// withoutAuthKey removes the auth_key parameter of a push URL, keeping any other.
func withoutAuthKey(u string) string {
	base, query, ok := strings.Cut(u, "?")
	if !ok {
		return u
	}
	var keep []string
	for part := range strings.SplitSeq(query, "&") {
		if !strings.HasPrefix(part, "auth_key=") {
			keep = append(keep, part)
		}
	}
	if len(keep) == 0 {
		return base
	}
	return base + "?" + strings.Join(keep, "&")
}

// listFor is /live/list's data as the caller may see it.
func (h *Handler) listFor(r *http.Request, p params, data []byte) ([]byte, error) {
	if !h.opts.AuthRequired || !strings.Contains(string(data), "auth_key=") {
		return data, nil
	}
	uid, err := h.tokenUser(r, p)
	if err != nil {
		return nil, err
	}
	var rooms []actors.RoomView
	if err := json.Unmarshal(data, &rooms); err != nil {
		return nil, err
	}
	for i := range rooms {
		if rooms[i].UID != uid {
			rooms[i].RtmpURL = withoutAuthKey(rooms[i].RtmpURL)
		}
	}
	return actors.MarshalJSON(rooms)
}

package actors

import (
	"strings"
	"testing"
	"time"
)

// Push bodies are written as Node's JSON.stringify wrote them: "&", "<" and ">" stay as they
// are (Go's default would send \u0026 and friends, which byte-comparing clients would see).
func TestEncodePushDoesNotEscapeHTML(t *testing.T) {
	p := EncodePush("r", "r", 8, 6, commentData{UID: "1", Name: "a&b", Comment: "<hi> & bye"}, time.UnixMilli(1700000000000))
	want := `{"data":{"uid":"1","name":"a&b","comment":"<hi> & bye"},"type":6,"time":1700000000000}`
	if string(p.Body) != want {
		t.Fatalf("body %s\nwant %s", p.Body, want)
	}
}

// The room list (pre-rendered per room) keeps the "&" of a signed push URL.
func TestListedRoomKeepsAmpersand(t *testing.T) {
	h := newHarness(t, nil, nil)
	host := mustLogin(t, h.eng, "host")
	room, err := h.eng.CreateRoom(bg, host.ID, "a & b")
	if err != nil {
		t.Fatal(err)
	}
	data, err := h.eng.List(bg, ListQuery{RoomID: "-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"description":"a & b"`) || strings.Contains(string(data), `\u0026`) {
		t.Fatalf("room %s listed as %s", room.ID, data)
	}
}

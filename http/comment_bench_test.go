package http_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkCommentInProcess drives /live/comment through the router, decoding, the actors
// and the gateway without a network, to profile the server's own cost per comment.
func BenchmarkCommentInProcess(b *testing.B) {
	t := &testing.T{}
	s := newServer(t, serverOpts{})
	mustOK(t, s.post(t, "/login", "name", "alice"), nil)
	var room roomObject
	mustOK(t, s.post(t, "/live/create", "uid", "1"), &room)
	body := `{"uid":"1","roomId":"` + room.RoomID + `","comment":"hello there"}`
	h := s.handler
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/live/comment", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"code":200`) {
				b.Fatalf("answer %d %s", w.Code, w.Body)
			}
		}
	})
}

package actors

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A dead letter protoactor logs says which message was dropped, never what it carried: a
// late room reply has the push URL with its auth_key.
func TestProtoactorLogsNoPayloads(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(typesOnly{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})})
	reply := roomReply{room: Room{ID: "1234567890", PushURL: "rtmp://push.example/app/1234567890?auth_key=1700000000-0-0-c0ffee"}}
	log.Info("[DeadLetter]", slog.Any("pid", &reply), slog.Any("message", reply), slog.Int64("throttled", 3),
		slog.Group("g", slog.Any("inner", reply)))
	log.With("sender", reply).Warn("x")
	out := buf.String()
	for _, leak := range []string{"auth_key", "c0ffee", "1234567890"} {
		if strings.Contains(out, leak) {
			t.Fatalf("protoactor log line carries %q: %s", leak, out)
		}
	}
	for _, kept := range []string{"[DeadLetter]", "message=actors.roomReply", "throttled=3", "sender=actors.roomReply"} {
		if !strings.Contains(out, kept) {
			t.Fatalf("log lacks %q: %s", kept, out)
		}
	}
}

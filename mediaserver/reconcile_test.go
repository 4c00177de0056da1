package mediaserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"roomengine/actors"
)

// An rtmp_stat page as nginx-rtmp 1.1.4 writes it (abridged): one publishing stream, one
// stream with only players left, and another application.
const statXML = `<?xml version="1.0" encoding="utf-8" ?>
<rtmp><nginx_version>1.22.1</nginx_version><nginx_rtmp_version>1.1.4</nginx_rtmp_version>
<server><application><name>DemoApp</name><live>
<stream><name>aaaa</name><time>5000</time><bw_in>0</bw_in><nclients>2</nclients>
 <client><id>3</id><address>127.0.0.1</address><flashver>FMLE/3.0</flashver><publishing/><active/></client>
 <client><id>4</id><address>127.0.0.1</address><flashver>LNX 9,0,124,2</flashver><active/></client>
 <publishing/><active/></stream>
<stream><name>bbbb</name><nclients>1</nclients>
 <client><id>5</id><address>127.0.0.1</address><flashver>LNX 9,0,124,2</flashver></client></stream>
<nclients>3</nclients></live></application>
<application><name>other</name><live><stream><name>cccc</name><publishing/></stream></live></application>
</server></rtmp>`

// SRS's GET /api/v1/streams as its documentation shows it (abridged).
const srsJSON = `{"code":0,"server":"vid-0xk989d","service":"4p9t8n5y","pid":"20651","streams":[
{"id":"vid-124q9y3","name":"aaaa","vhost":"vid-x","app":"DemoApp","tcUrl":"rtmp://127.0.0.1:1935/DemoApp","url":"/DemoApp/aaaa",
 "live_ms":1680000000000,"clients":1,"frames":100,"send_bytes":0,"recv_bytes":1000,"kbps":{"recv_30s":0,"send_30s":0},
 "publish":{"active":true,"cid":"341w361a"},"video":{"codec":"H264"},"audio":{"codec":"AAC"}},
{"id":"vid-2","name":"bbbb","app":"DemoApp","publish":{"active":false}},
{"id":"vid-3","name":"cccc","app":"other","publish":{"active":true}}]}`

func serve(t *testing.T, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	t.Cleanup(s.Close)
	return s.URL
}

// Each server's list names the streams being published to the application, no others.
func TestListers(t *testing.T) {
	for name, l := range map[string]Lister{
		"nginx-rtmp": NginxStat{URL: serve(t, statXML) + "/stat"},
		"srs":        SRSAPI{URL: serve(t, srsJSON)},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := l.Streams(context.Background(), "DemoApp")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !got["aaaa"] {
				t.Fatalf("streams %v, want only aaaa", got)
			}
		})
	}
	if _, err := (NginxStat{URL: serve(t, "<rtmp><server")}).Streams(context.Background(), "DemoApp"); err == nil {
		t.Error("a broken page is an error, not an empty list")
	}
}

type fakeEngine struct {
	rooms []actors.Room
	done  []string
}

func (f *fakeEngine) Rooms(context.Context) ([]actors.Room, error) { return f.rooms, nil }
func (f *fakeEngine) StreamPublishDone(_ context.Context, id string) error {
	f.done = append(f.done, id)
	return nil
}

type fakeLister struct {
	streams map[string]bool
	err     error
}

func (f *fakeLister) Name() string { return "fake" }
func (f *fakeLister) Streams(context.Context, string) (map[string]bool, error) {
	return f.streams, f.err
}

// A room publishing for the engine but absent from the list twice in a row gets its
// publish_done; once is not enough (a stream just started), a failed poll changes nothing
// (not even the count), and a stream of no room is counted as unknown (mixes of known rooms
// are not).
func TestReconcile(t *testing.T) {
	eng := &fakeEngine{rooms: []actors.Room{{ID: "live1", Publishing: true}, {ID: "gone1", Publishing: true}, {ID: "idle1"}}}
	list := &fakeLister{streams: map[string]bool{"live1": true, "live1_mix": true, "stray": true}}
	unknown := -1
	r := &Reconciler{Engine: eng, Listers: []Lister{list}, App: "DemoApp", TemplateName: "_mix",
		Logger: slog.New(slog.DiscardHandler), OnUnknown: func(n int) { unknown = n }}
	ctx := context.Background()
	r.Interval = 1e9
	r.Once(ctx)
	if len(eng.done) != 0 || unknown != 1 {
		t.Fatalf("after one poll: done %v, unknown %d", eng.done, unknown)
	}
	list.err = errors.New("connection refused")
	r.Once(ctx)
	r.Once(ctx)
	if len(eng.done) != 0 {
		t.Fatalf("failed polls applied %v", eng.done)
	}
	list.err = nil
	r.Once(ctx)
	if !slices.Equal(eng.done, []string{"gone1"}) {
		t.Fatalf("after the second complete poll: done %v", eng.done)
	}
}

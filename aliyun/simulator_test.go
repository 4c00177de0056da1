package aliyun_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"roomengine/actors"
	"roomengine/aliyun"
)

// parseAliyunQuery parses a callback query the way a tolerant server must: Aliyun leaves
// spaces in Message unencoded.
func parseAliyunQuery(t *testing.T, q string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(strings.ReplaceAll(q, " ", "%20"))
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	return v
}

func TestSimulatorStartNotifiesStopRemoves(t *testing.T) {
	got := make(chan string, 4)
	sim := &aliyun.Simulator{Domain: "play.example.com", App: "DemoApp", Notify: func(q string) { got <- q }}

	started, err := sim.StartMix(context.Background(), actors.MixRequest{MainStream: "aaaa", MixStream: "bbbb"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"aaaa_bbbb"}; !slices.Equal(started.Streams, want) {
		t.Fatalf("streams %v, want %v", started.Streams, want)
	}
	if _, err := sim.StartMix(context.Background(), actors.MixRequest{MainStream: "bbbb", MixStream: "aaaa", Template: "side_by_side"}); err != nil {
		t.Fatal(err)
	}
	want := []actors.MixRequest{
		{MainStream: "aaaa", MixStream: "bbbb", Template: "picture_in_picture"},
		{MainStream: "bbbb", MixStream: "aaaa", Template: "side_by_side"},
	}
	if r := sim.Running(); !slices.Equal(r, want) {
		t.Fatalf("running %v, want %v", r, want)
	}

	sim.Wait()
	close(got)
	var queries []string
	for q := range got {
		queries = append(queries, q)
	}
	if len(queries) != 2 {
		t.Fatalf("%d callbacks, want 2: %q", len(queries), queries)
	}
	byMain := map[string]url.Values{}
	for _, q := range queries {
		if !strings.Contains(q, "&Message=mix success") {
			t.Errorf("query %q: want Aliyun's unencoded space in Message", q)
		}
		if !strings.HasPrefix(q, "MainMixDomain=") {
			t.Errorf("query %q does not start like Aliyun's", q)
		}
		v := parseAliyunQuery(t, q)
		byMain[v.Get("MainMixStream")] = v
	}
	v := byMain["aaaa"]
	for k, w := range map[string]string{
		"MainMixDomain": "play.example.com", "MainMixApp": "DemoApp", "MainMixStream": "aaaa",
		"MixDomain": "play.example.com", "MixApp": "DemoApp", "MixStream": "bbbb",
		"MixType": "channel", "MixTemplate": "picture_in_picture", "Event": "MixResult",
		"Code": "Success", "Message": "mix success",
	} {
		if g := v.Get(k); g != w {
			t.Errorf("%s = %q, want %q", k, g, w)
		}
	}
	if g := byMain["bbbb"].Get("MixTemplate"); g != "side_by_side" {
		t.Errorf("second callback MixTemplate %q", g)
	}

	if err := sim.StopMix(context.Background(), actors.MixRequest{MainStream: "aaaa", MixStream: "bbbb"}); err != nil {
		t.Fatal(err)
	}
	if err := sim.StopMix(context.Background(), actors.MixRequest{MainStream: "nope", MixStream: "none"}); err != nil {
		t.Fatalf("stopping an unknown mix: %v", err)
	}
	if r := sim.Running(); !slices.Equal(r, want[1:]) {
		t.Fatalf("running after stop %v, want %v", r, want[1:])
	}
}

func TestSimulatorDelayAndStopBeforeResult(t *testing.T) {
	got := make(chan string, 2)
	sim := &aliyun.Simulator{Domain: "d", App: "a", Delay: 100 * time.Millisecond, Notify: func(q string) { got <- q }}
	req := actors.MixRequest{MainStream: "m", MixStream: "x"}
	start := time.Now()
	if _, err := sim.StartMix(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 50*time.Millisecond {
		t.Fatal("StartMix waited for the delay")
	}
	select {
	case q := <-got:
		t.Fatalf("callback before the delay: %q", q)
	default:
	}
	_ = sim.StopMix(context.Background(), req)
	sim.Wait()
	select {
	case q := <-got:
		t.Fatalf("callback for a mix stopped before its result: %q", q)
	default:
	}

	if _, err := sim.StartMix(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-got:
		if parseAliyunQuery(t, q).Get("Code") != "Success" {
			t.Fatalf("callback %q", q)
		}
		if time.Since(start) < 100*time.Millisecond {
			t.Fatal("callback before the delay")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no callback")
	}
}

func TestSimulatorResultCodeAndNilNotify(t *testing.T) {
	got := make(chan string, 1)
	sim := &aliyun.Simulator{ResultCode: "MainStreamNotExist", ResultMessage: "main stream not exist",
		Notify: func(q string) { got <- q }}
	if _, err := sim.StartMix(context.Background(), actors.MixRequest{MainStream: "m", MixStream: "x"}); err != nil {
		t.Fatal(err)
	}
	v := parseAliyunQuery(t, <-got)
	if v.Get("Code") != "MainStreamNotExist" || v.Get("Message") != "main stream not exist" {
		t.Fatalf("callback %v", v)
	}
	quiet := &aliyun.Simulator{}
	if _, err := quiet.StartMix(context.Background(), actors.MixRequest{MainStream: "m", MixStream: "x"}); err != nil {
		t.Fatal(err)
	}
	quiet.Wait()
	if len(quiet.Running()) != 1 {
		t.Fatal("mix not recorded without Notify")
	}
}

func TestMixResultQueryVariants(t *testing.T) {
	n := actors.MixResultNotice{MainMixDomain: "d", MainMixApp: "a", MainMixStream: "m", MixDomain: "d",
		MixApp: "a", MixStream: "x", MixType: "channel", MixTemplate: "picture_in_picture",
		Event: "MixResult", Code: "InternalError", Message: "50% done & failed"}
	raw := aliyun.MixResultQuery(n)
	if !strings.Contains(raw, "Message=50%25 done %26 failed") {
		t.Fatalf("raw query %q", raw)
	}
	enc := aliyun.EncodedMixResultQuery(n)
	if strings.Contains(enc, " ") {
		t.Fatalf("encoded query %q has a space", enc)
	}
	for _, q := range []string{raw, enc} {
		v := parseAliyunQuery(t, q)
		if v.Get("Message") != n.Message || v.Get("Code") != "InternalError" || v.Get("MixStream") != "x" {
			t.Fatalf("query %q parsed to %v", q, v)
		}
	}
}

func TestSimulatorCancelledContext(t *testing.T) {
	sim := &aliyun.Simulator{}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := sim.StartMix(cctx, actors.MixRequest{MainStream: "m", MixStream: "x"})
	mixErr(t, err, actors.CodeUnavailable)
	if len(sim.Running()) != 0 {
		t.Fatal("a cancelled start was recorded")
	}
}

package http

import (
	"testing"

	"roomengine/actors"
)

// The mix callback's body is not documented: what is recognised, from which shapes.
func TestRecogniseMixEvent(t *testing.T) {
	for name, tc := range map[string]struct {
		query, body string
		want        actors.MixEvent
	}{
		"JSON, failure code": {body: `{"MixStreamId":"m-1","Event":"MixStreamError","Code":"InternalError","Message":"input lost"}`,
			want: actors.MixEvent{MixID: "m-1", Event: "MixStreamError", Code: "InternalError", Message: "input lost", Failed: true, ErrCode: 3500}},
		"JSON nested, start event": {body: `{"EventType":"MixStreamStart","Data":{"mix_stream_id":"m-2","StreamName":"roomA_mix","Code":0}}`,
			want: actors.MixEvent{MixID: "m-2", MainRoom: "roomA", Event: "MixStreamStart", Code: "Success"}},
		"form, stop event": {body: "Action=MixStreamStop&StreamName=roomB_mix",
			want: actors.MixEvent{MainRoom: "roomB", Event: "MixStreamStop", Code: "MixStreamStop"}},
		"query, failed event without code": {query: "event=mix_failed&stream=roomC_mix&msg=no%20input",
			want: actors.MixEvent{MainRoom: "roomC", Event: "mix_failed", Code: "mix_failed", Message: "no input", Failed: true, ErrCode: 3000}},
		"a stream without the template suffix is not a room": {body: `{"StreamName":"roomA","Code":"Success"}`,
			want: actors.MixEvent{Code: "Success"}},
		"garbage": {body: `{not json`, want: actors.MixEvent{Code: "Success"}},
		"array":   {body: `[{"MixStreamId":"m-3"},{"MixStreamId":"m-4"}]`, want: actors.MixEvent{MixID: "m-3", Code: "Success"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := recogniseMixEvent(callbackFields(tc.query, []byte(tc.body)), "_mix"); got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

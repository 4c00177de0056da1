package aliyun

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"roomengine/actors"
)

// Simulator stands in for Aliyun's CDN mixing when mix is "simulator" (docs/aliyun.md). It
// implements actors.Mixer: StartMix records the mix as running and answers at once, then
// delivers a MixResult callback through Notify, the way Aliyun Live calls
// /ali/mix/status/notify; StopMix forgets the mix. Safe for concurrent use.
//
// Set the fields before the first call and do not change them afterwards.
type Simulator struct {
	// Domain and App fill the callback's MainMixDomain/MixDomain and MainMixApp/MixApp
	// (playHost and appName).
	Domain string
	App    string
	// Delay is how long after StartMix the callback is delivered; 0 means at once (still
	// in its own goroutine, after StartMix has returned its answer to the caller).
	Delay time.Duration
	// ResultCode is the callback's Code; default "Success". Tests may set
	// MainStreamNotExist, MixStreamNotExist or InternalError.
	ResultCode string
	// ResultMessage is the callback's Message; default "mix success". Like Aliyun's, it
	// may hold spaces.
	ResultMessage string
	// Notify receives the raw query string of each MixResult callback (see MixResultQuery):
	// exactly what follows "?" in Aliyun's request line, with the Message's spaces left
	// unencoded. It runs in its own goroutine, once per StartMix, unless the mix was
	// stopped (or started again) before Delay ran out. Nil means no callbacks.
	Notify func(query string)

	mu      sync.Mutex
	running map[mixKey]simMix
	gen     uint64
	wg      sync.WaitGroup
}

type mixKey struct{ main, mix string }

type simMix struct {
	req actors.MixRequest
	gen uint64
}

var _ actors.Mixer = (*Simulator)(nil)

// SimulatedStreamName is the stream name the Simulator's StartMix answers for a mix:
// main + "_" + mix (the name the fake CDN server answers too).
func SimulatedStreamName(req actors.MixRequest) string { return req.MainStream + "_" + req.MixStream }

// StartMix records the mix as running (starting it again restarts it) and schedules its
// MixResult callback. It answers MixStarted{Streams: [SimulatedStreamName(req)]}.
func (s *Simulator) StartMix(ctx context.Context, req actors.MixRequest) (actors.MixStarted, error) {
	if err := ctx.Err(); err != nil {
		return actors.MixStarted{}, actors.Errorf(actors.CodeUnavailable, "CDN mixing unavailable: request cancelled")
	}
	if req.Template == "" {
		req.Template = DefaultMixTemplate
	}
	k := mixKey{req.MainStream, req.MixStream}
	s.mu.Lock()
	if s.running == nil {
		s.running = map[mixKey]simMix{}
	}
	s.gen++
	gen := s.gen
	s.running[k] = simMix{req: req, gen: gen}
	notify := s.Notify
	if notify != nil {
		s.wg.Add(1)
	}
	s.mu.Unlock()

	if notify != nil {
		go func() {
			defer s.wg.Done()
			if s.Delay > 0 {
				time.Sleep(s.Delay)
			}
			s.mu.Lock()
			m, ok := s.running[k]
			s.mu.Unlock()
			if !ok || m.gen != gen {
				return // stopped or restarted meanwhile: this start has no result any more
			}
			notify(s.resultQuery(req))
		}()
	}
	return actors.MixStarted{Streams: []string{SimulatedStreamName(req)}}, nil
}

// StopMix forgets the mix; stopping a mix that is not running is fine.
func (s *Simulator) StopMix(ctx context.Context, req actors.MixRequest) error {
	s.mu.Lock()
	delete(s.running, mixKey{req.MainStream, req.MixStream})
	s.mu.Unlock()
	return nil
}

// Running lists the running mixes ordered by main then mix stream, templates filled in.
func (s *Simulator) Running() []actors.MixRequest {
	s.mu.Lock()
	out := make([]actors.MixRequest, 0, len(s.running))
	for _, m := range s.running {
		out = append(out, m.req)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].MainStream != out[j].MainStream {
			return out[i].MainStream < out[j].MainStream
		}
		return out[i].MixStream < out[j].MixStream
	})
	return out
}

// Wait blocks until every scheduled callback has been delivered or dropped (tests,
// shutdown).
func (s *Simulator) Wait() { s.wg.Wait() }

func (s *Simulator) resultQuery(req actors.MixRequest) string {
	code, msg := s.ResultCode, s.ResultMessage
	if code == "" {
		code = "Success"
	}
	if msg == "" {
		msg = "mix success"
	}
	return MixResultQuery(actors.MixResultNotice{
		MainMixDomain: s.Domain, MainMixApp: s.App, MainMixStream: req.MainStream,
		MixDomain: s.Domain, MixApp: s.App, MixStream: req.MixStream,
		MixType: "channel", MixTemplate: req.Template, Event: "MixResult",
		Code: code, Message: msg,
	})
}

// MixResultQuery is the raw query of a MixResult callback as Aliyun Live sends it to
// /ali/mix/status/notify (docs/api.md, Callbacks): the parameters in Aliyun's order, every value
// percent-encoded except Message, whose spaces Aliyun leaves unencoded (a request line
// such as "...&Message=mix success HTTP/1.1"). Use EncodedMixResultQuery for a query that
// any URL parser accepts.
func MixResultQuery(n actors.MixResultNotice) string {
	return mixResultQuery(n, func(s string) string {
		// Aliyun's Message is plain text; leave spaces, encode what would break the query.
		return strings.NewReplacer("%", "%25", "&", "%26", "#", "%23", "+", "%2B").Replace(s)
	})
}

// EncodedMixResultQuery is MixResultQuery with Message percent-encoded too (space as %20).
func EncodedMixResultQuery(n actors.MixResultNotice) string {
	return mixResultQuery(n, PercentEncode)
}

func mixResultQuery(n actors.MixResultNotice, encodeMessage func(string) string) string {
	pairs := []struct{ k, v string }{
		{"MainMixDomain", n.MainMixDomain}, {"MainMixApp", n.MainMixApp}, {"MainMixStream", n.MainMixStream},
		{"MixDomain", n.MixDomain}, {"MixApp", n.MixApp}, {"MixStream", n.MixStream},
		{"MixType", n.MixType}, {"MixTemplate", n.MixTemplate}, {"Event", n.Event},
		{"Code", n.Code},
	}
	var b strings.Builder
	for _, p := range pairs {
		b.WriteString(p.k + "=" + PercentEncode(p.v) + "&")
	}
	b.WriteString("Message=" + encodeMessage(n.Message))
	return b.String()
}

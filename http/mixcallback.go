package http

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"roomengine/actors"
	"roomengine/aliyun"
)

// mixCallbackRoute receives the Live API's mix callbacks (CreateMixStream's CallbackConfig).
const mixCallbackRoute = "/ali/mix/callback"

// mixCallback handles /ali/mix/callback. Aliyun does not document the body of this
// callback, so it is read leniently — a JSON value (objects at any depth), a form body and
// the query string all count, names compared without case, '_' or '-' — logged at INFO, and
// what can be recognised is applied (MixEvent): a recognised failure becomes push 14, any
// other event push 16. It is signed like the other live callbacks when ali.callbackAuthKey
// is set (403 otherwise) and else always answered HTTP 200, whatever the body.
func (h *Handler) mixCallback(cb *callbackAuth) httprouter.Handle {
	metrics := h.metrics.forRoute(mixCallbackRoute)
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		defer func() { h.trace(r, mixCallbackRoute, rec.code, time.Since(start), metrics) }()
		if cb != nil {
			if reason := cb.check(r); reason != "" {
				cb.refuse(mixCallbackRoute, reason, r)
				writeError(rec, actors.Errorf(actors.CodeForbidden, "回调签名校验失败: %s", reason))
				return
			}
		}
		var body []byte
		if hasBody(r) {
			body, _ = io.ReadAll(http.MaxBytesReader(nil, r.Body, h.opts.MaxBodyBytes))
			h.setReadDeadline(w, time.Time{})
		}
		fields := callbackFields(r.URL.RawQuery, body)
		if cb != nil && cb.replayed(mixCallbackRoute, params(fields), r) {
			cb.refused.WithLabelValues(mixCallbackRoute, RefusedReplay).Inc()
			writeOK(rec, nil) // a repeat: answered as the first one, applied no more
			return
		}
		ev := recogniseMixEvent(fields, h.opts.TemplateName)
		h.log.Info("aliyun mix callback", "mixStreamId", ev.MixID, "mainRoom", ev.MainRoom, "event", ev.Event,
			"code", ev.Code, "failed", ev.Failed, "query", r.URL.RawQuery,
			"body", string(body)) // cut to logcap.DefaultMaxValue bytes by the logger
		if ev.MixID == "" && ev.MainRoom == "" {
			writeOK(rec, nil) // nothing to apply it to; logged above
			return
		}
		if err := h.opts.Engine.MixEvent(r.Context(), ev); err != nil {
			h.log.Warn("mix callback not applied", "err", err)
			writeError(rec, err)
			return
		}
		writeOK(rec, nil)
	}
}

// callbackFields collects the named values of a query string and a body (JSON or form),
// keyed by normalized name; of a name given twice the first value counts.
func callbackFields(query string, body []byte) map[string]string {
	fields := map[string]string{}
	add := func(k, v string) {
		if k = normalizeName(k); k != "" {
			if _, seen := fields[k]; !seen {
				fields[k] = v
			}
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				switch leaf := t[k].(type) {
				case string:
					add(k, leaf)
				case json.Number:
					add(k, leaf.String())
				case bool:
					add(k, map[bool]string{true: "true", false: "false"}[leaf])
				default:
					walk(leaf)
				}
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	body = []byte(strings.TrimSpace(string(body)))
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var doc any
	if len(body) > 0 && (body[0] == '{' || body[0] == '[') && dec.Decode(&doc) == nil {
		walk(doc)
	} else if len(body) > 0 {
		p := params{}
		mergeForm(p, string(body))
		for k, v := range p {
			add(k, v)
		}
	}
	q := params{}
	mergeForm(q, query)
	for k, v := range q {
		add(k, v)
	}
	return fields
}

func normalizeName(k string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(k))
}

// Names the mix callback's fields are looked for under (normalized), in order.
var (
	mixIDNames   = []string{"mixstreamid", "mixid", "taskid"}
	streamNames  = []string{"streamname", "outputstreamname", "stream", "mixstream"}
	eventNames   = []string{"event", "eventtype", "action", "status", "state"}
	codeNames    = []string{"code", "errorcode", "errcode", "statuscode"}
	messageNames = []string{"message", "msg", "errormessage", "errmsg", "description", "reason"}
)

func firstOf(fields map[string]string, names []string) string {
	for _, n := range names {
		if v := fields[n]; v != "" {
			return v
		}
	}
	return ""
}

// recogniseMixEvent reads a mix callback's fields. Its room is the output stream named in
// it (room + template suffix), or it is found by MixStreamId. It is a failure when its code
// is not a success (Success, OK, 0, 200) or its event names a failure or an error; a
// success-like event counts as Code Success (mixedStatus 1) unless it names a stop.
func recogniseMixEvent(fields map[string]string, templateSuffix string) actors.MixEvent {
	ev := actors.MixEvent{MixID: firstOf(fields, mixIDNames), Event: firstOf(fields, eventNames),
		Code: firstOf(fields, codeNames), Message: firstOf(fields, messageNames)}
	if s := firstOf(fields, streamNames); templateSuffix != "" && strings.HasSuffix(s, templateSuffix) {
		ev.MainRoom = strings.TrimSuffix(s, templateSuffix)
	}
	event, code := strings.ToLower(ev.Event), strings.ToLower(ev.Code)
	okCode := code == "" || code == "success" || code == "ok" || code == "0" || code == "200"
	switch {
	case !okCode || strings.Contains(event, "fail") || strings.Contains(event, "error"):
		ev.Failed, ev.ErrCode = true, aliyun.MixErrorCode(ev.Code)
		if ev.Code == "" {
			ev.Code = ev.Event
		}
	case strings.Contains(event, "stop") || strings.Contains(event, "delete") ||
		strings.Contains(event, "close") || strings.Contains(event, "finish"):
		ev.Code = ev.Event // mixedStatus 0, push 16
	default:
		ev.Code = "Success"
	}
	return ev
}

package gateway

import (
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Defaults of the subscription limits (Options.MaxTags and the rest; config http.ws.*).
const (
	DefaultMaxTags         = 16
	DefaultMaxTagLength    = 128
	DefaultMaxTopicLength  = 256
	DefaultMaxConnsPerAddr = 256
)

// Why a subscription was refused before the upgrade, as the label of
// roomengine_ws_refused_total.
const (
	RefusedTooManyTags  = "too_many_tags"  // more than MaxTags tags: HTTP 400
	RefusedTagTooLong   = "tag_too_long"   // a tag longer than MaxTagLength bytes: HTTP 400
	RefusedTopicTooLong = "topic_too_long" // a topic longer than MaxTopicLength bytes: HTTP 400
	RefusedTooManyConns = "too_many_conns" // MaxConnsPerAddr connections open from the address: HTTP 429
)

var refusalReasons = []string{RefusedTooManyTags, RefusedTagTooLong, RefusedTopicTooLong, RefusedTooManyConns}

// refusal is a subscription refused before the upgrade.
type refusal struct {
	reason string
	status int
	msg    string
}

// checkTopic refuses a topic over the length limit.
func (g *Gateway) checkTopic(topic string) *refusal {
	if len(topic) > g.opts.MaxTopicLength {
		return &refusal{RefusedTopicTooLong, http.StatusBadRequest,
			fmt.Sprintf("topic过长（最多%d字节）", g.opts.MaxTopicLength)}
	}
	return nil
}

// parseTags splits the comma-separated tags, dropping empty ones and duplicates. It stops
// at the first tag past a limit, so a huge list costs no more than the limits allow.
func (g *Gateway) parseTags(s string) ([]string, *refusal) {
	var tags []string
	for t := range strings.SplitSeq(s, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if len(t) > g.opts.MaxTagLength {
			return nil, &refusal{RefusedTagTooLong, http.StatusBadRequest,
				fmt.Sprintf("tag过长（最多%d字节）", g.opts.MaxTagLength)}
		}
		if containsTag(tags, t) {
			continue
		}
		if len(tags) == g.opts.MaxTags {
			return nil, &refusal{RefusedTooManyTags, http.StatusBadRequest,
				fmt.Sprintf("tags过多（最多%d个）", g.opts.MaxTags)}
		}
		tags = append(tags, t)
	}
	return tags, nil
}

// containsTag is a scan: the list is at most MaxTags long while it is being built.
func containsTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// clientAddr is the address connections are counted by: the peer's IP, as for
// http.rateLimit. Behind a proxy every client has the proxy's address.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// enter counts a connection from addr, or refuses it when addr has MaxConnsPerAddr open.
// Every successful enter is paired with a leave.
func (g *Gateway) enter(addr string) *refusal {
	if g.opts.MaxConnsPerAddr < 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr] >= g.opts.MaxConnsPerAddr {
		return &refusal{RefusedTooManyConns, http.StatusTooManyRequests,
			fmt.Sprintf("该地址的推送连接过多（最多%d个）", g.opts.MaxConnsPerAddr)}
	}
	g.perAddr[addr]++
	return nil
}

func (g *Gateway) leave(addr string) {
	if g.opts.MaxConnsPerAddr < 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
}

// refuse answers a refused subscription with the envelope and counts it.
func (g *Gateway) refuse(w http.ResponseWriter, rf *refusal) {
	g.metrics.refused(rf.reason)
	if rf.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeEnvelope(w, rf.status, rf.status, rf.msg)
}

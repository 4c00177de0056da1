package http

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Behind a proxy every request comes from the proxy's address. With http.trustedProxies the
// handler takes the client's address from the proxy's headers, and only from a proxy it
// trusts: X-Forwarded-For (or, without it, Forwarded: for=) is read from the right, where
// each proxy appended the address it saw, and the first address that is not a trusted
// proxy is the client. Entries to its left were written by the client itself and are
// ignored, so a spoofed left-most entry gains nothing. The address found replaces
// r.RemoteAddr, so the rate limit, the WebSocket per-address cap and the logs all use it.

// clientAddrOf returns the client address of a request whose TCP peer is peer.
func clientAddrOf(trusted []netip.Prefix, peer netip.Addr, h http.Header) netip.Addr {
	if !isTrusted(trusted, peer) {
		return peer
	}
	hops := forwardedFor(h)
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			// Not an address: nothing to its left can be believed; the last trusted
			// hop answers for the request.
			return client
		}
		client = a
		if !isTrusted(trusted, a) {
			return a
		}
	}
	return client
}

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor lists the hops of X-Forwarded-For, or of Forwarded's for= when there is no
// X-Forwarded-For, left to right over every header line.
func forwardedFor(h http.Header) []string {
	var hops []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for hop := range strings.SplitSeq(line, ",") {
				hops = append(hops, strings.TrimSpace(hop))
			}
		}
		return hops
	}
	for _, line := range h.Values("Forwarded") {
		for elem := range strings.SplitSeq(line, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					hops = append(hops, strings.Trim(strings.TrimSpace(v), `"`))
				}
			}
		}
	}
	return hops
}

// parseHop reads "1.2.3.4", "1.2.3.4:5", "2001:db8::1" or "[2001:db8::1]:5".
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// withClientAddr sets r.RemoteAddr to the client's address when the request came through
// a trusted proxy (port 0: the client's port is not known).
func withClientAddr(r *http.Request, trusted []netip.Prefix) *http.Request {
	if len(trusted) == 0 {
		return r
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r
	}
	peer := ap.Addr().Unmap()
	client := clientAddrOf(trusted, peer, r.Header)
	if client == peer {
		return r
	}
	r2 := r.WithContext(r.Context())
	r2.RemoteAddr = net.JoinHostPort(client.String(), "0")
	return r2
}

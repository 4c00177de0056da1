// Package peer carries the messages of a cluster between its nodes: a request for a room or
// call that another node owns, and that node's answer, as one JSON envelope (actors.PeerRequest,
// actors.PeerReply) over HTTP/1.1 keep-alive connections on the cluster address
// (cluster.bindAddr). The address must be reachable by the other nodes only: it is the
// inside of the cluster, with no client authentication of its own.
package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"roomengine/actors"
)

// Path is the one route of the cluster address.
const Path = "/peer/v1"

// maxBody bounds a peer message (a room snapshot or an event: a few KiB).
const maxBody = 1 << 20

// Engine is what the handler needs: the node's answer to a peer's request.
type Engine interface {
	ServePeer(ctx context.Context, req actors.PeerRequest) actors.PeerReply
}

// Handler serves the cluster address.
func Handler(engine Engine, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, func(w http.ResponseWriter, r *http.Request) {
		var req actors.PeerRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
			log.Warn("peer request not decoded", "from", r.RemoteAddr, "err", err)
			http.Error(w, "bad peer request", http.StatusBadRequest)
			return
		}
		rep := engine.ServePeer(r.Context(), req)
		if rep.Status == actors.PeerRetry {
			// A node that is leaving retires the connections peers pooled to it, so none
			// of them is reused while it closes.
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
	return mux
}

// Client sends peer requests; it implements actors.Transport.
type Client struct {
	http *http.Client
}

// NewClient makes a client whose connections to a node that is gone fail fast: a refused
// or unreachable address is known within dialTimeout, and the caller's deadline bounds
// everything else (a frozen node never answers).
func NewClient(dialTimeout time.Duration) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Send delivers req to the node at addr and returns its answer.
func (c *Client) Send(ctx context.Context, addr string, req actors.PeerRequest) (actors.PeerReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return actors.PeerReply{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+Path, bytes.NewReader(body))
	if err != nil {
		return actors.PeerReply{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			// No connection was made: the request was not delivered.
			return actors.PeerReply{}, fmt.Errorf("%w: %v", actors.ErrPeerUnreachable, err)
		}
		return actors.PeerReply{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return actors.PeerReply{}, fmt.Errorf("peer %s answered HTTP %d", addr, resp.StatusCode)
	}
	var rep actors.PeerReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&rep); err != nil {
		return actors.PeerReply{}, fmt.Errorf("peer %s: %w", addr, err)
	}
	if rep.Status == "" {
		return actors.PeerReply{}, errors.New("peer " + addr + ": answer without a status")
	}
	return rep, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Package peer carries the messages of a cluster between its nodes: a request for a room or
// call that another node owns, and that node's answer, as one JSON envelope (actors.PeerRequest,
// actors.PeerReply) over HTTP/1.1 keep-alive connections on the cluster address
// (cluster.bindAddr). With a cluster.secret every request and answer is signed (sign.go) and
// a node obeys only requests signed by its peers; the listener (conns.go) keeps connections
// that have not proved themselves from using up the node.
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

// Kinds of signed message (the first line of the canonical string).
const (
	kindRequest = http.MethodPost
	kindReply   = "REPLY"
)

// Engine is what the handler needs: the node's answer to a peer's request.
type Engine interface {
	ServePeer(ctx context.Context, req actors.PeerRequest) actors.PeerReply
}

// Handler serves the cluster address. signer is nil in a cluster without a secret.
func Handler(engine Engine, signer *Signer, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, func(w http.ResponseWriter, r *http.Request) {
		// The signature's headers are checked before the body is read, the body before it
		// is decoded: a stranger costs one header parse, a replay one hash.
		if signer != nil {
			if err := signer.headersOK(r.Header); err != nil {
				refuse(w, r, log, err)
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			log.Warn("peer request not read", "from", r.RemoteAddr, "err", err)
			http.Error(w, "bad peer request", http.StatusBadRequest)
			return
		}
		if signer != nil {
			if err := signer.verify(r.Header, kindRequest, body, ""); err != nil {
				refuse(w, r, log, err)
				return
			}
			if !signer.fresh(r.Header.Get(HeaderNonce)) {
				refuse(w, r, log, errReplay)
				return
			}
			proved(r.Context())
		}
		var req actors.PeerRequest
		if err := json.Unmarshal(body, &req); err != nil {
			log.Warn("peer request not decoded", "from", r.RemoteAddr, "err", err)
			http.Error(w, "bad peer request", http.StatusBadRequest)
			return
		}
		if err := actors.CheckPeerRequest(req); err != nil {
			log.Warn("peer request refused", "from", r.RemoteAddr, "err", err)
			http.Error(w, "bad peer request: "+err.Error(), http.StatusBadRequest)
			return
		}
		proved(r.Context())
		rep := engine.ServePeer(r.Context(), req)
		if rep.Status == actors.PeerRetry {
			// A node that is leaving retires the connections peers pooled to it, so none
			// of them is reused while it closes.
			w.Header().Set("Connection", "close")
		}
		out, err := json.Marshal(rep)
		if err != nil {
			http.Error(w, "answer not encoded", http.StatusInternalServerError)
			return
		}
		if signer != nil {
			signer.sign(w.Header(), kindReply, out, r.Header.Get(HeaderNonce))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	return mux
}

// refuse answers a request that is not correctly signed: 401, nothing done.
func refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.Warn("peer request refused", "from", r.RemoteAddr, "err", err)
	w.Header().Set("Connection", "close")
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

// Client sends peer requests; it implements actors.Transport.
type Client struct {
	http   *http.Client
	tr     *http.Transport
	signer *Signer
	scheme string // "http://", or "https://" after UseTLS
}

// NewClient makes a client whose connections to a node that is gone fail fast: a refused
// or unreachable address is known within dialTimeout, and the caller's deadline bounds
// everything else (a frozen node never answers). signer is nil in a cluster without a
// secret.
func NewClient(dialTimeout time.Duration, signer *Signer) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{http: &http.Client{Transport: tr}, tr: tr, signer: signer, scheme: "http://"}
}

// Send delivers req to the node at addr and returns its answer.
func (c *Client) Send(ctx context.Context, addr string, req actors.PeerRequest) (actors.PeerReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return actors.PeerReply{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+addr+Path, bytes.NewReader(body))
	if err != nil {
		return actors.PeerReply{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	var nonce string
	if c.signer != nil {
		nonce = c.signer.sign(hr.Header, kindRequest, body, "")
	}
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
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return actors.PeerReply{}, fmt.Errorf("peer %s: %w", addr, err)
	}
	if c.signer != nil {
		if err := c.signer.verify(resp.Header, kindReply, out, nonce); err != nil {
			return actors.PeerReply{}, fmt.Errorf("peer %s: answer refused: %w", addr, err)
		}
	}
	var rep actors.PeerReply
	if err := json.Unmarshal(out, &rep); err != nil {
		return actors.PeerReply{}, fmt.Errorf("peer %s: %w", addr, err)
	}
	if rep.Status == "" {
		return actors.PeerReply{}, errors.New("peer " + addr + ": answer without a status")
	}
	return rep, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

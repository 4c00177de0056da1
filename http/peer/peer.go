// Package peer carries the messages of a cluster between its nodes: a request for a room or
// call that another node owns, and that node's answer, as one JSON envelope (actors.PeerRequest,
// actors.PeerReply) over HTTP/1.1 keep-alive connections on the cluster address
// (cluster.bindAddr); requests for one node that arrive while posts to it are under way share
// the next post, as a JSON array (batch.go). With a cluster.secret every request and answer
// (a batch: every post and its answer) is signed (sign.go) and a node obeys only requests
// signed by its peers; the listener (conns.go) keeps connections that have not proved
// themselves from using up the node.
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
	"sync"
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
			if err := signer.fresh(r.Header.Get(HeaderNonce)); err != nil {
				refuse(w, r, log, err)
				return
			}
			proved(r.Context())
		}
		out, retire, err := serveBody(r.Context(), engine, body)
		if err != nil {
			log.Warn("peer request refused", "from", r.RemoteAddr, "err", err)
			http.Error(w, "bad peer request: "+err.Error(), http.StatusBadRequest)
			return
		}
		proved(r.Context())
		if retire {
			// A node that is leaving retires the connections peers pooled to it, so none
			// of them is reused while it closes.
			w.Header().Set("Connection", "close")
		}
		if signer != nil {
			signer.sign(w.Header(), kindReply, out, r.Header.Get(HeaderNonce))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	return mux
}

// serveBody decodes one request (a JSON object) or a batch (a JSON array, batch.go), has
// the engine answer each — a batch's requests concurrently — and encodes the answer in the
// same shape. retire reports that the node is leaving (an answer says retry).
func serveBody(ctx context.Context, engine Engine, body []byte) (out []byte, retire bool, err error) {
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '[' {
		var req actors.PeerRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, false, fmt.Errorf("not decoded: %w", err)
		}
		if err := actors.CheckPeerRequest(req); err != nil {
			return nil, false, err
		}
		rep := engine.ServePeer(ctx, req)
		out, err := json.Marshal(rep)
		return out, rep.Status == actors.PeerRetry, err
	}
	var reqs []actors.PeerRequest
	if err := json.Unmarshal(body, &reqs); err != nil {
		return nil, false, fmt.Errorf("batch not decoded: %w", err)
	}
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, false, fmt.Errorf("batch of %d requests (want 1..%d)", len(reqs), MaxBatch)
	}
	for i, req := range reqs {
		if err := actors.CheckPeerRequest(req); err != nil {
			return nil, false, fmt.Errorf("batch item %d: %w", i, err)
		}
	}
	reps := make([]actors.PeerReply, len(reqs))
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() { reps[i] = engine.ServePeer(ctx, reqs[i]) })
	}
	wg.Wait()
	for _, rep := range reps {
		retire = retire || rep.Status == actors.PeerRetry
	}
	out, err = json.Marshal(reps)
	return out, retire, err
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

	mu       sync.Mutex
	batchers map[string]*batcher // by node address (batch.go)
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

// send posts one request as a single JSON object.
func (c *Client) send(ctx context.Context, addr string, req actors.PeerRequest) (actors.PeerReply, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return actors.PeerReply{}, err
	}
	out, err := c.roundTrip(ctx, addr, body, maxBody)
	if err != nil {
		return actors.PeerReply{}, err
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

// roundTrip posts body (signed, with a secret) and returns the answer's verified body, of at
// most limit bytes.
func (c *Client) roundTrip(ctx context.Context, addr string, body []byte, limit int64) ([]byte, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+addr+Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
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
			return nil, fmt.Errorf("%w: %v", actors.ErrPeerUnreachable, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		return nil, fmt.Errorf("peer %s answered HTTP %d", addr, resp.StatusCode)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	if c.signer != nil {
		if err := c.signer.verify(resp.Header, kindReply, out, nonce); err != nil {
			return nil, fmt.Errorf("peer %s: answer refused: %w", addr, err)
		}
	}
	return out, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

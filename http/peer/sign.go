package peer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Every message between the nodes of a cluster that has a cluster.secret is signed, so a
// node obeys only its peers. A request carries
//
//	X-Peer-Time:      Unix seconds
//	X-Peer-Nonce:     16 random bytes, hex
//	X-Peer-Signature: hex(HMAC-SHA256(secret, "POST\n/peer/v1\n{time}\n{nonce}\n{hex sha256(body)}"))
//
// and its answer the same three headers over "REPLY\n/peer/v1\n{time}\n{nonce}\n{hex
// sha256(body)}\n{the request's nonce}": an answer is bound to the request it answers, so an
// old answer cannot be passed off for a new request.
const (
	HeaderTime      = "X-Peer-Time"
	HeaderNonce     = "X-Peer-Nonce"
	HeaderSignature = "X-Peer-Signature"
)

const (
	// MaxSkew is how far a message's time may be from the receiver's clock.
	MaxSkew = 30 * time.Second
	// NonceMemory is how long a request nonce is remembered at least (strictly longer, in
	// fact); it is at least 2×MaxSkew, so a request replayed at any time its time is still
	// accepted is refused.
	NonceMemory = 60 * time.Second
	nonceBytes  = 16
	// maxNonces bounds the remembered nonces: signed requests only are remembered, so
	// only the cluster's own traffic fills it (a nonce stays less than two minutes: about
	// 17k posts per second to one node; 16 bytes each).
	maxNonces = 1 << 21
)

// Errors of a message that is not correctly signed; the handler answers all of them 401.
var (
	errUnsigned     = errors.New("peer message not signed")
	errBadSignature = errors.New("peer message signature does not match")
	errSkew         = errors.New("peer message time too far from this node's clock")
	errReplay       = errors.New("peer message nonce seen before")
	errNoncesFull   = errors.New("too many peer messages to remember their nonces")
)

// Signer signs with the cluster secret and checks with it or the previous one. The zero
// Signer (nil) is a cluster without a secret: nothing is signed or checked.
type Signer struct {
	secret   []byte
	accepted [][]byte
	now      func() time.Time

	mu sync.Mutex
	// The request nonces seen, in two generations: cur since curStart, prev the
	// NonceMemory before it. A generation is dropped whole, so nothing is swept per nonce,
	// and its keys hold no pointers, so the garbage collector does not scan them (a busy
	// cluster remembers a million).
	cur, prev map[nonceKey]struct{}
	curStart  time.Time
}

// nonceKey is a nonce's digest: fixed size and free of pointers.
type nonceKey [16]byte

// NewSigner returns nil when secret is empty (an unsigned cluster on loopback).
func NewSigner(secret, previous string) *Signer {
	if secret == "" {
		return nil
	}
	s := &Signer{secret: []byte(secret), accepted: [][]byte{[]byte(secret)}, now: time.Now,
		cur: map[nonceKey]struct{}{}, prev: map[nonceKey]struct{}{}}
	if previous != "" {
		s.accepted = append(s.accepted, []byte(previous))
	}
	return s
}

func canonical(kind, ts, nonce string, body []byte, bound string) []byte {
	sum := sha256.Sum256(body)
	s := kind + "\n" + Path + "\n" + ts + "\n" + nonce + "\n" + hex.EncodeToString(sum[:])
	if bound != "" {
		s += "\n" + bound
	}
	return []byte(s)
}

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// sign sets the three headers on h for body; bound is the request nonce an answer is for
// ("" for a request). It returns the nonce it chose.
func (s *Signer) sign(h http.Header, kind string, body []byte, bound string) string {
	n := make([]byte, nonceBytes)
	_, _ = rand.Read(n)
	nonce := hex.EncodeToString(n)
	ts := strconv.FormatInt(s.now().Unix(), 10)
	h.Set(HeaderTime, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, hex.EncodeToString(mac(s.secret, canonical(kind, ts, nonce, body, bound))))
	return nonce
}

// headersOK checks what can be checked before the body is read: the headers are there and
// well formed, and the time is within MaxSkew.
func (s *Signer) headersOK(h http.Header) error {
	ts, nonce, sig := h.Get(HeaderTime), h.Get(HeaderNonce), h.Get(HeaderSignature)
	if ts == "" || nonce == "" || sig == "" {
		return errUnsigned
	}
	if b, err := hex.DecodeString(nonce); err != nil || len(b) < nonceBytes || len(nonce) > 128 {
		return errUnsigned
	}
	if b, err := hex.DecodeString(sig); err != nil || len(b) != sha256.Size {
		return errBadSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errUnsigned
	}
	d := s.now().Sub(time.Unix(sec, 0))
	if d > MaxSkew || d < -MaxSkew {
		return errSkew
	}
	return nil
}

// verify checks the signature of body under any accepted secret.
func (s *Signer) verify(h http.Header, kind string, body []byte, bound string) error {
	if err := s.headersOK(h); err != nil {
		return err
	}
	sig, _ := hex.DecodeString(h.Get(HeaderSignature))
	msg := canonical(kind, h.Get(HeaderTime), h.Get(HeaderNonce), body, bound)
	for _, key := range s.accepted {
		if hmac.Equal(sig, mac(key, msg)) {
			return nil
		}
	}
	return errBadSignature
}

// fresh records a verified request's nonce. It answers errReplay when the nonce was seen
// within NonceMemory, and errNoncesFull when the memory is full of live nonces. A nonce is
// remembered for more than NonceMemory and less than twice that: the generations are
// consecutive windows of NonceMemory each, whenever calls come.
func (s *Signer) fresh(nonce string) error {
	sum := sha256.Sum256([]byte(nonce))
	key := nonceKey(sum[:16])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch age := now.Sub(s.curStart); {
	case age >= 2*NonceMemory:
		// Everything in cur went in before curStart+NonceMemory: all of it is old enough.
		clear(s.prev)
		clear(s.cur)
		s.curStart = now
	case age >= NonceMemory:
		// The next window starts where cur's ended, not now: a quiet node must not keep
		// old nonces for longer (nor forget any sooner).
		s.prev, s.cur = s.cur, s.prev
		clear(s.cur)
		s.curStart = s.curStart.Add(NonceMemory)
	}
	_, inCur := s.cur[key]
	_, inPrev := s.prev[key]
	if inCur || inPrev {
		return errReplay
	}
	if len(s.cur)+len(s.prev) >= maxNonces {
		return errNoncesFull // refuse rather than forget a nonce that may be replayed
	}
	s.cur[key] = struct{}{}
	return nil
}

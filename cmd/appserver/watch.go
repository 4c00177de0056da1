package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// runWatch is `appserver watch`: it subscribes to a topic of the push gateway (/ws) and
// prints each frame as one JSON line on stdout, until the server closes the connection or
// ctx ends (Ctrl-C). Exit status: 0 when the server closed normally (1000 topic deleted,
// 1001 shutdown) or ctx ended, 1 for any other end (1013: reconnect with -since), 2 for
// bad flags.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("appserver watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("topic", "", "topic to watch: a room id (required)")
	tags := fs.String("tags", "", "comma-separated tags: only messages with one of them (the room id, a uid)")
	since := fs.Int64("since", -1, "replay what came after this seq (the last one seen)")
	addr := fs.String("addr", "localhost:4000", "the server: host:port, or an http(s):// or ws(s):// URL")
	token := fs.String("token", "", "login token, when the server has auth.required")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: appserver watch -topic ROOM [-tags T1,T2] [-since SEQ] [-addr HOST:PORT] [-token T]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *topic == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	u, err := watchURL(*addr, *topic, *tags, *token, *since)
	if err != nil {
		fmt.Fprintln(stderr, "watch:", err)
		return 2
	}
	conn, res, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "watch: %s: %v%s\n", u, err, refusal(res))
		return 1
	}
	defer conn.CloseNow()
	conn.SetReadLimit(-1) // a frame is as large as the message it carries
	for {
		_, frame, err := conn.Read(ctx)
		if err != nil {
			return watchEnd(ctx, err, stderr)
		}
		var line bytes.Buffer
		if json.Compact(&line, frame) != nil {
			line.Reset()
			line.Write(bytes.ReplaceAll(frame, []byte("\n"), []byte(" ")))
		}
		line.WriteByte('\n')
		if _, err := stdout.Write(line.Bytes()); err != nil {
			return 1 // stdout closed (a pipe to head): nothing more to do
		}
	}
}

// watchURL builds the /ws URL for addr (host:port or a URL).
func watchURL(addr, topic, tags, token string, since int64) (string, error) {
	base := addr
	if !strings.Contains(base, "://") {
		base = "ws://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad -addr %q", addr)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("bad -addr %q: scheme %s", addr, u.Scheme)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	q := url.Values{"topic": {topic}}
	if tags != "" {
		q.Set("tags", tags)
	}
	if since >= 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	if token != "" {
		q.Set("token", token)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// refusal is the server's answer to a refused upgrade (its JSON envelope), for the error line.
func refusal(res *http.Response) string {
	if res == nil || res.Body == nil {
		return ""
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	return " (HTTP " + strconv.Itoa(res.StatusCode) + ": " + string(bytes.TrimSpace(body)) + ")"
}

// watchEnd reports how the connection ended and turns it into the exit status.
func watchEnd(ctx context.Context, err error, stderr io.Writer) int {
	if ctx.Err() != nil {
		return 0
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "watch: closed by the server: %d %s\n", int(ce.Code), ce.Reason)
		if ce.Code == websocket.StatusNormalClosure || ce.Code == websocket.StatusGoingAway {
			return 0
		}
		return 1
	}
	fmt.Fprintln(stderr, "watch: connection lost:", err)
	return 1
}

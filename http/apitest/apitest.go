// Package apitest checks the answers of the HTTP API against its OpenAPI document
// (docs/openapi.yaml) with kin-openapi, so the document cannot drift from the code. Tests
// install its Transport as http.DefaultTransport (Install) and Watch the servers they
// start: every answer those servers give through a client of that transport is validated
// — status, content type and body — and a mismatch fails the request (and, through
// Problems, the test binary). It is imported by tests only.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"roomengine/docs"
)

// Validator validates answers against the document.
type Validator struct {
	doc *openapi3.T
	// failure is the envelope of a failed answer: what unknown routes (404) and wrong
	// methods (405) answer, which have no operation in the document.
	failure *openapi3.Schema

	mu       sync.Mutex
	problems []string
	checked  int
}

// Load reads docs/openapi.yaml and validates the document itself.
func Load() (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docs.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	ref := doc.Components.Schemas["Failure"]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("docs/openapi.yaml: no components.schemas.Failure")
	}
	return &Validator{doc: doc, failure: ref.Value}, nil
}

var shared = sync.OnceValues(Load)

// Shared is the validator of the process (loaded once); it panics if the document is broken.
func Shared() *Validator {
	v, err := shared()
	if err != nil {
		panic(err)
	}
	return v
}

// Check validates one answer to method target (target is the request's path and query as
// sent, which may contain raw spaces). An answer with status 101 has no body to check.
func (v *Validator) Check(method, target string, status int, header http.Header, body []byte) error {
	err := v.check(method, target, status, header, body)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.checked++
	if err != nil {
		v.problems = append(v.problems, err.Error())
	}
	return err
}

// CheckFrame validates one WebSocket text frame of /ws: the Frame schema, and its message's
// data against the schema of its push type (PushNData), which must be documented.
func (v *Validator) CheckFrame(raw []byte) error {
	err := v.checkFrame(raw)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.checked++
	if err != nil {
		v.problems = append(v.problems, err.Error())
	}
	return err
}

func (v *Validator) checkFrame(raw []byte) error {
	var frame map[string]any
	if err := json.Unmarshal(raw, &frame); err != nil {
		return fmt.Errorf("frame is not a JSON object: %q", truncate(raw))
	}
	schemas := v.doc.Components.Schemas
	opts := []openapi3.SchemaValidationOption{openapi3.MultiErrors(), openapi3.DisableSchemaErrorDetails()}
	if err := schemas["Frame"].Value.VisitJSON(frame, opts...); err != nil {
		return fmt.Errorf("frame %s does not match Frame of docs/openapi.yaml: %v", truncate(raw), err)
	}
	msg, _ := frame["message"].(map[string]any)
	typ, _ := msg["type"].(float64)
	data := schemas[fmt.Sprintf("Push%dData", int(typ))]
	if data == nil {
		return fmt.Errorf("push type %v is not documented in docs/openapi.yaml (Push%vData): %s", typ, typ, truncate(raw))
	}
	if err := data.Value.VisitJSON(msg["data"], opts...); err != nil {
		return fmt.Errorf("push type %v: data %s does not match Push%vData of docs/openapi.yaml: %v", typ, truncate(raw), typ, err)
	}
	return nil
}

func (v *Validator) check(method, target string, status int, header http.Header, body []byte) error {
	path, query, _ := strings.Cut(target, "?")
	if method == http.MethodOptions {
		// CORS preflight (http.corsOrigins) and the router's automatic OPTIONS answer:
		// no body, on any route (docs/api.md, CORS).
		if (status != http.StatusNoContent && status != http.StatusOK) || len(body) != 0 {
			return fmt.Errorf("OPTIONS %s: HTTP %d with %d bytes, want 200 or 204 without a body", path, status, len(body))
		}
		return nil
	}
	item := v.doc.Paths.Value(path)
	var op *openapi3.Operation
	if item != nil {
		op = item.GetOperation(method)
	}
	if op == nil {
		// Not a route of the document: only the envelope of 404 / 405 is a valid answer, or
		// 414 for a request line too long to be routed at all.
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed && status != http.StatusRequestURITooLong {
			return fmt.Errorf("docs/openapi.yaml has no operation %s %s, which answered HTTP %d", method, truncate([]byte(path)), status)
		}
		var decoded any
		if err := json.Unmarshal(body, &decoded); err != nil {
			return fmt.Errorf("%s %s: HTTP %d answer is not JSON: %q", method, path, status, truncate(body))
		}
		if err := v.failure.VisitJSON(decoded); err != nil {
			return fmt.Errorf("%s %s: HTTP %d answer is not a Failure envelope: %v", method, path, status, err)
		}
		return nil
	}
	u := &url.URL{Path: path, RawQuery: strings.ReplaceAll(query, " ", "%20")}
	req := &http.Request{Method: method, URL: u, Header: http.Header{}}
	route := &routers.Route{Spec: v.doc, Path: path, PathItem: item, Method: method, Operation: op}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, Route: route},
		Status:                 status,
		Header:                 header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			// The reasons and where (a JSON pointer), without a dump of the whole schema.
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()}},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s: HTTP %d answer %s does not match docs/openapi.yaml: %v", method, path, status, truncate(body), err)
	}
	return nil
}

// truncate shortens an answer for an error message, cutting at a character boundary.
func truncate(b []byte) string {
	const max = 300
	if len(b) <= max {
		return string(b)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

// Problems lists every mismatch found so far, and how many answers were checked.
func (v *Validator) Problems() (problems []string, checked int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.problems...), v.checked
}

// Transport validates the answers of watched hosts, passing every request to Base.
type Transport struct {
	Base      http.RoundTripper
	Validator *Validator
	hosts     sync.Map // host:port → true
}

// Watch makes the transport validate answers from the server at base (a URL or host:port).
func (t *Transport) Watch(base string) {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		base = u.Host
	}
	t.hosts.Store(base, true)
}

func (t *Transport) watched(host string) bool {
	_, ok := t.hosts.Load(host)
	return ok
}

// RoundTrip sends req and validates the answer of a watched host. A mismatch is an error
// of the request (so the test that sent it fails where it sent it) and is recorded.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.Base.RoundTrip(req)
	if err != nil || !t.watched(req.URL.Host) {
		return res, err
	}
	target := req.URL.RequestURI()
	if res.StatusCode == http.StatusSwitchingProtocols {
		// A WebSocket: the body is the connection; only the status is checked.
		if err := t.Validator.Check(req.Method, target, res.StatusCode, res.Header, nil); err != nil {
			res.Body.Close()
			return nil, err
		}
		return res, nil
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if req.Method == http.MethodHead {
		return res, nil
	}
	if err := t.Validator.Check(req.Method, target, res.StatusCode, res.Header, body); err != nil {
		return nil, err
	}
	return res, nil
}

var (
	installOnce sync.Once
	installed   *Transport
)

// Install makes http.DefaultClient validate (once per process) and returns its Transport:
// http.Get, http.PostForm, http.DefaultClient.Do and websocket.Dial use it. Another client
// gets it with Client (http.DefaultTransport itself stays an *http.Transport, which
// production code clones).
func Install() *Transport {
	installOnce.Do(func() {
		installed = &Transport{Base: http.DefaultTransport, Validator: Shared()}
		http.DefaultClient.Transport = installed
	})
	return installed
}

// Client is a client with the validating transport of Install and the given timeout.
func Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: Install(), Timeout: timeout}
}

// Report prints what the validator found, for TestMain: it returns false if any answer
// did not match the document.
func Report(w io.Writer) bool {
	if installed == nil {
		return true
	}
	problems, checked := installed.Validator.Problems()
	if len(problems) == 0 {
		if testing.Verbose() {
			fmt.Fprintf(w, "apitest: %d answers checked against docs/openapi.yaml\n", checked)
		}
		return true
	}
	fmt.Fprintf(w, "apitest: %d of %d answers do not match docs/openapi.yaml:\n", len(problems), checked)
	for _, p := range problems {
		fmt.Fprintln(w, "  ", p)
	}
	return false
}

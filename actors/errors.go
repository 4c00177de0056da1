package actors

import (
	"errors"
	"fmt"
)

// Error codes of the response envelope (docs/api.md, Error codes), kept from the old server.
const (
	CodeOK              = 200
	CodeMissingParam    = 20001
	CodeNoSuchUser      = 2002
	CodeNoSuchRoom      = 2003
	CodeInCall          = 3020
	CodeMixFailed       = 3000
	CodeMixInvalidArg   = 3400
	CodeMixNoSuchStream = 3404
	CodeMixInternal     = 3500
	CodeBadState        = 4000
	CodeUnauthorized    = 401
	CodeForbidden       = 403
	CodeTooLarge        = 413
	CodeInternal        = 500
	CodeUnavailable     = 503
)

// Error is a failure a client sees: a code of the envelope and a short message. cause, when
// set, is the internal reason: it goes to the log (Error, Unwrap), never to the client,
// because it may name internal addresses.
type Error struct {
	Code    int
	Message string
	cause   error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d: %s (%v)", e.Code, e.Message, e.cause)
	}
	return fmt.Sprintf("%d: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.cause }

// Errorf builds an *Error.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrNoSuchRoom is the 2003 answer for a room id.
func ErrNoSuchRoom(roomID string) *Error {
	return Errorf(CodeNoSuchRoom, "roomId=%s的直播不存在", roomID)
}

// ErrNoSuchUser is the 2002 answer for a user id.
func ErrNoSuchUser(uid string) *Error {
	return Errorf(CodeNoSuchUser, "%s用户不存在", uid)
}

// ErrInCall is the 3020 answer for a room already in a co-streaming call.
func ErrInCall(roomID string) *Error {
	return Errorf(CodeInCall, "%s房间已经连麦中", roomID)
}

// ErrStoreUnavailable is the 503 answer when a change could not be made durable; the change
// was not applied.
func ErrStoreUnavailable(err error) *Error {
	return &Error{Code: CodeUnavailable, Message: "存储不可用，请稍后重试", cause: err}
}

// HasCode reports whether err is an *Error with the given code.
func HasCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

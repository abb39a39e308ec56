package msb

import (
	"errors"
	"fmt"
	"strings"
)

// Error is anything msbd refused or failed; Message is msbd's own. Test for a kind with
// errors.Is(err, msb.ErrNotFound) and friends.
type Error struct {
	Message  string
	Status   int    // HTTP status msbd answered with (0 when it did not answer)
	Kind     string // ErrorBody.kind: invalid, not_found, conflict, unprocessable, start_failed, internal
	ExitCode *int64 // for a command that could not start: the exit code a shell gives (127, 126)
	sentinel error
}

func (e *Error) Error() string { return e.Message }

// Unwrap gives the sentinel of the error's kind.
func (e *Error) Unwrap() error { return e.sentinel }

var (
	// ErrNotFound: no sandbox has this name (404).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the sandbox name is taken (409 on create).
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the sandbox's state does not allow the operation (409).
	ErrConflict = errors.New("conflict")
	// ErrInvalidArgument: the request breaks a documented constraint (400) or cannot be carried
	// out here (422).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrStartFailed: the command could not start (422 start_failed); also ErrInvalidArgument.
	ErrStartFailed = fmt.Errorf("start failed: %w", ErrInvalidArgument)
	// ErrMetricsDisabled: the sandbox was created with metrics off; also ErrConflict.
	ErrMetricsDisabled = fmt.Errorf("metrics disabled: %w", ErrConflict)
	// ErrMetricsUnavailable: no sample yet; also ErrConflict.
	ErrMetricsUnavailable = fmt.Errorf("metrics unavailable: %w", ErrConflict)
	// ErrDaemonUnreachable: msbd is not answering on its socket and could not be started.
	ErrDaemonUnreachable = errors.New("daemon unreachable")
	// ErrInternal: msbd failed.
	ErrInternal = errors.New("internal error")
)

func unreachable(format string, args ...any) error {
	return &Error{Message: fmt.Sprintf(format, args...), sentinel: ErrDaemonUnreachable}
}

// errorFrom is the typed error for msbd's answer status with its ErrorBody.
func errorFrom(status int, body ErrorBody, operation string) error {
	e := &Error{Message: body.Error, Status: status, Kind: body.Kind, ExitCode: body.ExitCode}
	if e.Message == "" {
		e.Message = fmt.Sprintf("msbd answered %d", status)
	}
	switch {
	case status == 404:
		e.sentinel = ErrNotFound
	case status == 409 && operation == "create":
		e.sentinel = ErrAlreadyExists
	case status == 409 && operation == "metrics" && strings.Contains(e.Message, "disabled"):
		e.sentinel = ErrMetricsDisabled
	case status == 409 && operation == "metrics":
		e.sentinel = ErrMetricsUnavailable
	case status == 409:
		e.sentinel = ErrConflict
	case body.Kind == "start_failed":
		e.sentinel = ErrStartFailed
	case status == 400 || status == 415 || status == 422:
		e.sentinel = ErrInvalidArgument
	default:
		e.sentinel = ErrInternal
	}
	return e
}

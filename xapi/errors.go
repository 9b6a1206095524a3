package xapi

import (
	"errors"
	"fmt"
	"strings"
)

// XenAPI error codes this package and its callers look at.
const (
	CodeSessionAuthenticationFailed = "SESSION_AUTHENTICATION_FAILED"
	CodeSessionInvalid              = "SESSION_INVALID"
	CodeHostIsSlave                 = "HOST_IS_SLAVE"
	CodeHandleInvalid               = "HANDLE_INVALID"
	CodeUUIDInvalid                 = "UUID_INVALID"
	CodeVDIInUse                    = "VDI_IN_USE"
	CodeVDINoCBTMetadata            = "VDI_NO_CBT_METADATA"
	CodeVDICBTEnabled               = "VDI_CBT_ENABLED"
	CodeVMBadPowerState             = "VM_BAD_POWER_STATE"
	CodeMessageMethodUnknown        = "MESSAGE_METHOD_UNKNOWN"
	CodeSROperationNotSupported     = "SR_OPERATION_NOT_SUPPORTED"
)

var (
	// ErrNotFound matches (errors.Is) an *Error with HANDLE_INVALID or
	// UUID_INVALID: the object named does not exist (any more).
	ErrNotFound = errors.New("XAPI object not found")
	// ErrTaskCancelled is returned by WaitTask for a task someone
	// cancelled.
	ErrTaskCancelled = errors.New("XAPI task cancelled")
	// ErrTaskFailed matches (errors.Is) a task's own failure as WaitTask
	// returns it (the *Error of its error_info stays reachable with
	// errors.As), never an error of polling the task.
	ErrTaskFailed = errors.New("XAPI task failed")
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("XAPI client closed")
)

// Error is a failure XAPI reports: its code (the JSON-RPC error message,
// or a task's error_info[0]) and the code's parameters.
type Error struct {
	Code   string
	Params []string
}

// Error returns "XAPI CODE: param, param".
func (e *Error) Error() string {
	if len(e.Params) == 0 {
		return "XAPI " + e.Code
	}
	return "XAPI " + e.Code + ": " + strings.Join(e.Params, ", ")
}

// Is makes errors.Is(err, ErrNotFound) hold for HANDLE_INVALID and
// UUID_INVALID.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && (e.Code == CodeHandleInvalid || e.Code == CodeUUIDInvalid)
}

// IsCode reports whether err is or wraps an *Error with that code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// HTTPError is a non-2xx answer of an HTTP handler (export_raw_vdi,
// import_raw_vdi, export, import).
type HTTPError struct {
	Handler    string // "import_raw_vdi"
	StatusCode int
	Status     string // "500 Internal Error"
	FirstLine  string // of the body, trimmed; may be empty
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("XAPI %s: HTTP %s", e.Handler, e.Status)
	if e.FirstLine != "" {
		s += ": " + e.FirstLine
	}
	return s
}

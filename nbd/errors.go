package nbd

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ahvfs/ahvfs/nbd/internal/wire"
)

// Sentinel errors; test with errors.Is. The errors this package returns
// wrap them with the operation and the server's address.
var (
	// ErrUnknownExport: the server has no export of that name
	// (NBD_REP_ERR_UNKNOWN, or an NBD_OPT_EXPORT_NAME the server
	// answered by closing the connection).
	ErrUnknownExport = errors.New("nbd: unknown export")
	// ErrTLSRequired: the server will not go on without TLS
	// (NBD_REP_ERR_TLS_REQD); set Options.TLS.
	ErrTLSRequired = errors.New("nbd: server requires TLS")
	// ErrTLSUnavailable: TLS was asked for and the server does not offer
	// it (NBD_OPT_STARTTLS refused, or an old-style server).
	ErrTLSUnavailable = errors.New("nbd: server does not offer TLS")
	// ErrPolicy: the server's policy forbids what was asked
	// (NBD_REP_ERR_POLICY).
	ErrPolicy = errors.New("nbd: refused by server policy")
	// ErrShutdown: the server is shutting down (NBD_REP_ERR_SHUTDOWN or
	// NBD_ESHUTDOWN).
	ErrShutdown = errors.New("nbd: server is shutting down")
	// ErrUnsupported: the server lacks a feature this call needs (block
	// status without base:allocation, oldstyle negotiation, ...).
	ErrUnsupported = errors.New("nbd: not supported by the server")
	// ErrProtocol: the server broke the protocol (bad magic, unknown
	// cookie, a length out of range, overlapping chunks, ...). The
	// connection is dropped.
	ErrProtocol = errors.New("nbd: protocol violation")
	// ErrConnectionLost: the connection failed; every request in flight
	// and every later one fails with an error that wraps this one and
	// the cause (io.ErrUnexpectedEOF, a net error, a timeout,
	// ErrProtocol).
	ErrConnectionLost = errors.New("nbd: connection lost")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("nbd: client closed")
)

// protocolErrorf reports a protocol violation by the server.
func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// OptionError is a server's refusal of an option during the handshake
// (an NBD_REP_ERR_* reply). It matches ErrUnknownExport, ErrTLSRequired,
// ErrPolicy, ErrShutdown, ErrUnsupported or ErrTLSUnavailable with
// errors.Is as its Reply calls for.
type OptionError struct {
	Option  uint32 // the option refused, NBD_OPT_*
	Reply   uint32 // the error reply, NBD_REP_ERR_*
	Export  string // the export concerned, when the option names one
	Message string // the server's explanation, possibly empty
}

func (e *OptionError) Error() string {
	s := fmt.Sprintf("nbd: server refused %s", optName(e.Option))
	if e.Option == optGo || e.Option == optInfo || e.Option == optExportName || e.Option == optSetMetaContext {
		s += fmt.Sprintf(" for export %q", e.Export)
	}
	s += ": " + repName(e.Reply)
	switch e.Reply {
	case repErrUnknown:
		s += " (no such export)"
	case repErrTLSReqd:
		s += " (the server requires TLS: set Options.TLS)"
	case repErrPolicy:
		s += " (forbidden by the server's policy)"
	case repErrUnsup:
		s += " (unknown to the server)"
	case repErrPlatform:
		s += " (not available on the server's platform)"
	case repErrShutdown:
		s += " (the server is shutting down)"
	case repErrInvalid:
		s += " (invalid request)"
	case repErrBlockSizeReqd:
		s += " (the server requires block size negotiation)"
	case repErrTooBig:
		s += " (request or reply too big)"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is maps the reply to the package's sentinels.
func (e *OptionError) Is(target error) bool {
	switch target {
	case ErrUnknownExport:
		return e.Reply == repErrUnknown
	case ErrTLSRequired:
		return e.Reply == repErrTLSReqd
	case ErrPolicy:
		return e.Reply == repErrPolicy
	case ErrShutdown:
		return e.Reply == repErrShutdown
	case ErrUnsupported:
		return e.Reply == repErrUnsup || e.Reply == repErrPlatform
	case ErrTLSUnavailable:
		return e.Option == optStartTLS
	}
	return false
}

// CommandError is an error the server reported for one command (a simple
// reply with a nonzero error, or an error chunk of a structured reply).
// It unwraps to the matching syscall.Errno (EIO, EINVAL, EPERM, ENOSPC,
// ...), so errors.Is(err, syscall.EIO) works; a value the protocol does
// not define counts as EINVAL, as proto.md asks.
type CommandError struct {
	Command uint16 // NBD_CMD_*
	Offset  int64  // the request's offset
	Length  uint32 // the request's length
	Errno   uint32 // the NBD error value
	Message string // the server's explanation, possibly empty
	// ErrorOffset is where the error happened, when the server said
	// (NBD_REPLY_TYPE_ERROR_OFFSET); -1 otherwise.
	ErrorOffset int64
}

func (e *CommandError) Error() string {
	s := fmt.Sprintf("nbd: %s of %d bytes at offset %d: server error %s", cmdName(e.Command), e.Length, e.Offset, errnoName(e.Errno))
	if e.ErrorOffset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.ErrorOffset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the syscall.Errno the NBD error value stands for.
func (e *CommandError) Unwrap() error { return e.SyscallErrno() }

// SyscallErrno returns the syscall.Errno the NBD error value stands for.
func (e *CommandError) SyscallErrno() syscall.Errno {
	switch e.Errno {
	case wire.EPERM:
		return syscall.EPERM
	case wire.EIO:
		return syscall.EIO
	case wire.ENOMEM:
		return syscall.ENOMEM
	case wire.EINVAL:
		return syscall.EINVAL
	case wire.ENOSPC:
		return syscall.ENOSPC
	case wire.EOVERFLOW:
		return syscall.EOVERFLOW
	case wire.ENOTSUP:
		return syscall.ENOTSUP
	case wire.ESHUTDOWN:
		return syscall.ESHUTDOWN
	}
	return syscall.EINVAL
}

// Is reports ErrShutdown for NBD_ESHUTDOWN.
func (e *CommandError) Is(target error) bool {
	return target == ErrShutdown && e.Errno == wire.ESHUTDOWN
}

// connError is what every request gets once the connection has failed.
type connError struct {
	addr string
	err  error
}

func (e *connError) Error() string {
	return fmt.Sprintf("nbd: connection to %s lost: %v", e.addr, e.err)
}

func (e *connError) Unwrap() error { return e.err }

func (e *connError) Is(target error) bool { return target == ErrConnectionLost }

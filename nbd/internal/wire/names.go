package wire

import "fmt"

// OptName names an option, for messages.
func OptName(o uint32) string {
	switch o {
	case OptExportName:
		return "NBD_OPT_EXPORT_NAME"
	case OptAbort:
		return "NBD_OPT_ABORT"
	case OptList:
		return "NBD_OPT_LIST"
	case OptStartTLS:
		return "NBD_OPT_STARTTLS"
	case OptInfo:
		return "NBD_OPT_INFO"
	case OptGo:
		return "NBD_OPT_GO"
	case OptStructuredReply:
		return "NBD_OPT_STRUCTURED_REPLY"
	case OptListMetaContext:
		return "NBD_OPT_LIST_META_CONTEXT"
	case OptSetMetaContext:
		return "NBD_OPT_SET_META_CONTEXT"
	case OptExtendedHeaders:
		return "NBD_OPT_EXTENDED_HEADERS"
	}
	return fmt.Sprintf("option %d", o)
}

// RepName names an option reply type, for messages.
func RepName(r uint32) string {
	switch r {
	case RepAck:
		return "NBD_REP_ACK"
	case RepServer:
		return "NBD_REP_SERVER"
	case RepInfo:
		return "NBD_REP_INFO"
	case RepMetaContext:
		return "NBD_REP_META_CONTEXT"
	case RepErrUnsup:
		return "NBD_REP_ERR_UNSUP"
	case RepErrPolicy:
		return "NBD_REP_ERR_POLICY"
	case RepErrInvalid:
		return "NBD_REP_ERR_INVALID"
	case RepErrPlatform:
		return "NBD_REP_ERR_PLATFORM"
	case RepErrTLSReqd:
		return "NBD_REP_ERR_TLS_REQD"
	case RepErrUnknown:
		return "NBD_REP_ERR_UNKNOWN"
	case RepErrShutdown:
		return "NBD_REP_ERR_SHUTDOWN"
	case RepErrBlockSizeReqd:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD"
	case RepErrTooBig:
		return "NBD_REP_ERR_TOO_BIG"
	case RepErrExtHeaderReqd:
		return "NBD_REP_ERR_EXT_HEADER_REQD"
	}
	if r&RepFlagError != 0 {
		return fmt.Sprintf("NBD_REP_ERR_%d", r&^RepFlagError)
	}
	return fmt.Sprintf("reply type %d", r)
}

// CmdName names a command, for messages.
func CmdName(c uint16) string {
	switch c {
	case CmdRead:
		return "NBD_CMD_READ"
	case CmdWrite:
		return "NBD_CMD_WRITE"
	case CmdDisc:
		return "NBD_CMD_DISC"
	case CmdFlush:
		return "NBD_CMD_FLUSH"
	case CmdTrim:
		return "NBD_CMD_TRIM"
	case CmdCache:
		return "NBD_CMD_CACHE"
	case CmdWriteZeroes:
		return "NBD_CMD_WRITE_ZEROES"
	case CmdBlockStatus:
		return "NBD_CMD_BLOCK_STATUS"
	case CmdResize:
		return "NBD_CMD_RESIZE"
	}
	return fmt.Sprintf("command %d", c)
}

// ReplyTypeName names a structured reply chunk type, for messages.
func ReplyTypeName(t uint16) string {
	switch t {
	case ReplyTypeNone:
		return "NBD_REPLY_TYPE_NONE"
	case ReplyTypeOffsetData:
		return "NBD_REPLY_TYPE_OFFSET_DATA"
	case ReplyTypeOffsetHole:
		return "NBD_REPLY_TYPE_OFFSET_HOLE"
	case ReplyTypeBlockStatus:
		return "NBD_REPLY_TYPE_BLOCK_STATUS"
	case ReplyTypeError:
		return "NBD_REPLY_TYPE_ERROR"
	case ReplyTypeErrorOffset:
		return "NBD_REPLY_TYPE_ERROR_OFFSET"
	}
	return fmt.Sprintf("reply chunk type %#x", t)
}

// ErrnoName names an error value, for messages.
func ErrnoName(n uint32) string {
	switch n {
	case EPERM:
		return "NBD_EPERM"
	case EIO:
		return "NBD_EIO"
	case ENOMEM:
		return "NBD_ENOMEM"
	case EINVAL:
		return "NBD_EINVAL"
	case ENOSPC:
		return "NBD_ENOSPC"
	case EOVERFLOW:
		return "NBD_EOVERFLOW"
	case ENOTSUP:
		return "NBD_ENOTSUP"
	case ESHUTDOWN:
		return "NBD_ESHUTDOWN"
	}
	return fmt.Sprintf("%d", n)
}

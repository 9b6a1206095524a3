package nbd

import "fmt"

// Wire constants of the NBD protocol (doc/proto.md of
// github.com/NetworkBlockDevice/nbd). Every integer on the wire is big
// endian.
const (
	magicInit     = 0x4e42444d41474943 // "NBDMAGIC", first word from the server
	magicOldstyle = 0x00420281861253   // cliserv_magic: oldstyle negotiation
	magicOpt      = 0x49484156454f5054 // "IHAVEOPT": newstyle, and every option request
	magicOptReply = 0x0003e889045565a9 // option reply
	magicRequest  = 0x25609513         // transmission request
	magicSimple   = 0x67446698         // simple reply
	magicChunk    = 0x668e33ef         // structured reply chunk
	magicExtended = 0x6e8a278c         // extended-header reply (not negotiated by this client)
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1
)

// Option types.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option reply types; errors have bit 31 set.
const (
	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repMetaContext = 4

	repFlagError         = 1 << 31
	repErrUnsup          = repFlagError | 1
	repErrPolicy         = repFlagError | 2
	repErrInvalid        = repFlagError | 3
	repErrPlatform       = repFlagError | 4
	repErrTLSReqd        = repFlagError | 5
	repErrUnknown        = repFlagError | 6
	repErrShutdown       = repFlagError | 7
	repErrBlockSizeReqd  = repFlagError | 8
	repErrTooBig         = repFlagError | 9
	repErrExtHeaderReqd  = repFlagError | 10
	maxOptionReplyLength = 64 << 10 // no option reply this client asks for is longer
)

// Information types of NBD_REP_INFO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Transmission flags, as reported by Info().Flags.
const (
	FlagHasFlags        = 1 << 0  // always set by a conforming server
	FlagReadOnly        = 1 << 1  // the export refuses writes
	FlagSendFlush       = 1 << 2  // NBD_CMD_FLUSH understood
	FlagSendFUA         = 1 << 3  // NBD_CMD_FLAG_FUA understood
	FlagRotational      = 1 << 4  // rotational medium
	FlagSendTrim        = 1 << 5  // NBD_CMD_TRIM understood
	FlagSendWriteZeroes = 1 << 6  // NBD_CMD_WRITE_ZEROES understood
	FlagSendDF          = 1 << 7  // NBD_CMD_FLAG_DF understood on reads
	FlagCanMultiConn    = 1 << 8  // several connections share one consistent cache
	FlagSendCache       = 1 << 10 // NBD_CMD_CACHE understood
	FlagSendFastZero    = 1 << 11 // NBD_CMD_FLAG_FAST_ZERO understood
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagReqOne = 1 << 3
)

// Structured reply chunk flags and types; error types have bit 15 set.
const (
	chunkFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkFlagError   = 1 << 15
	chunkError       = chunkFlagError | 1
	chunkErrorOffset = chunkFlagError | 2
)

// Sizes of fixed parts of messages.
const (
	requestLen      = 28 // magic, flags, type, cookie, offset, length
	simpleHeaderLen = 16 // magic, error, cookie
	chunkHeaderLen  = 20 // magic, flags, type, cookie, length
	optHeaderLen    = 20 // magic, option, reply type, length
)

// Protocol limits.
const (
	// DefaultPort is the IANA port of NBD.
	DefaultPort = "10809"
	// maxStringLen bounds export names and messages (proto.md: strings
	// MUST be no longer than 4096 bytes).
	maxStringLen = 4096
	// maxMinBlock is the largest minimum block size a server may
	// advertise.
	maxMinBlock = 64 << 10
	// maxStatusChunk bounds a block status chunk (2^20 extents).
	maxStatusChunk = 4 + 8<<20
)

// State flags of the base:allocation metadata context.
const (
	StateHole = 1 << 0 // the extent is not allocated on the server
	StateZero = 1 << 1 // the extent reads as zeroes
)

// metaBaseAllocation is the one metadata context this client selects.
const metaBaseAllocation = "base:allocation"

func optName(o uint32) string {
	switch o {
	case optExportName:
		return "NBD_OPT_EXPORT_NAME"
	case optAbort:
		return "NBD_OPT_ABORT"
	case optList:
		return "NBD_OPT_LIST"
	case optStartTLS:
		return "NBD_OPT_STARTTLS"
	case optInfo:
		return "NBD_OPT_INFO"
	case optGo:
		return "NBD_OPT_GO"
	case optStructuredReply:
		return "NBD_OPT_STRUCTURED_REPLY"
	case optListMetaContext:
		return "NBD_OPT_LIST_META_CONTEXT"
	case optSetMetaContext:
		return "NBD_OPT_SET_META_CONTEXT"
	}
	return fmt.Sprintf("option %d", o)
}

func repName(r uint32) string {
	switch r {
	case repAck:
		return "NBD_REP_ACK"
	case repServer:
		return "NBD_REP_SERVER"
	case repInfo:
		return "NBD_REP_INFO"
	case repMetaContext:
		return "NBD_REP_META_CONTEXT"
	case repErrUnsup:
		return "NBD_REP_ERR_UNSUP"
	case repErrPolicy:
		return "NBD_REP_ERR_POLICY"
	case repErrInvalid:
		return "NBD_REP_ERR_INVALID"
	case repErrPlatform:
		return "NBD_REP_ERR_PLATFORM"
	case repErrTLSReqd:
		return "NBD_REP_ERR_TLS_REQD"
	case repErrUnknown:
		return "NBD_REP_ERR_UNKNOWN"
	case repErrShutdown:
		return "NBD_REP_ERR_SHUTDOWN"
	case repErrBlockSizeReqd:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD"
	case repErrTooBig:
		return "NBD_REP_ERR_TOO_BIG"
	case repErrExtHeaderReqd:
		return "NBD_REP_ERR_EXT_HEADER_REQD"
	}
	if r&repFlagError != 0 {
		return fmt.Sprintf("NBD_REP_ERR_%d", r&^repFlagError)
	}
	return fmt.Sprintf("reply type %d", r)
}

func cmdName(c uint16) string {
	switch c {
	case cmdRead:
		return "NBD_CMD_READ"
	case cmdWrite:
		return "NBD_CMD_WRITE"
	case cmdDisc:
		return "NBD_CMD_DISC"
	case cmdFlush:
		return "NBD_CMD_FLUSH"
	case cmdTrim:
		return "NBD_CMD_TRIM"
	case cmdCache:
		return "NBD_CMD_CACHE"
	case cmdWriteZeroes:
		return "NBD_CMD_WRITE_ZEROES"
	case cmdBlockStatus:
		return "NBD_CMD_BLOCK_STATUS"
	}
	return fmt.Sprintf("command %d", c)
}

func chunkName(t uint16) string {
	switch t {
	case chunkNone:
		return "NBD_REPLY_TYPE_NONE"
	case chunkOffsetData:
		return "NBD_REPLY_TYPE_OFFSET_DATA"
	case chunkOffsetHole:
		return "NBD_REPLY_TYPE_OFFSET_HOLE"
	case chunkBlockStatus:
		return "NBD_REPLY_TYPE_BLOCK_STATUS"
	case chunkError:
		return "NBD_REPLY_TYPE_ERROR"
	case chunkErrorOffset:
		return "NBD_REPLY_TYPE_ERROR_OFFSET"
	}
	return fmt.Sprintf("reply chunk type %#x", t)
}

package nbd

import "github.com/ahvfs/ahvfs/nbd/internal/wire"

// The client's names for the wire constants of the NBD protocol, which
// are defined once, in nbd/internal/wire (see there and doc/proto.md of
// github.com/NetworkBlockDevice/nbd). Every integer on the wire is big
// endian.
const (
	magicInit     = wire.MagicInit
	magicOldstyle = wire.MagicOldstyle
	magicOpt      = wire.MagicOpt
	magicOptReply = wire.MagicOptReply
	magicRequest  = wire.MagicRequest
	magicSimple   = wire.MagicSimpleReply
	magicChunk    = wire.MagicStructuredReply
	magicExtended = wire.MagicExtendedReply // not negotiated by this client
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = wire.FlagFixedNewstyle
	flagNoZeroes       = wire.FlagNoZeroes
	flagCFixedNewstyle = wire.FlagCFixedNewstyle
	flagCNoZeroes      = wire.FlagCNoZeroes
)

// Option types.
const (
	optExportName      = wire.OptExportName
	optAbort           = wire.OptAbort
	optList            = wire.OptList
	optStartTLS        = wire.OptStartTLS
	optInfo            = wire.OptInfo
	optGo              = wire.OptGo
	optStructuredReply = wire.OptStructuredReply
	optListMetaContext = wire.OptListMetaContext
	optSetMetaContext  = wire.OptSetMetaContext
)

// Option reply types; errors have bit 31 set.
const (
	repAck         = wire.RepAck
	repServer      = wire.RepServer
	repInfo        = wire.RepInfo
	repMetaContext = wire.RepMetaContext

	repFlagError        = wire.RepFlagError
	repErrUnsup         = wire.RepErrUnsup
	repErrPolicy        = wire.RepErrPolicy
	repErrInvalid       = wire.RepErrInvalid
	repErrPlatform      = wire.RepErrPlatform
	repErrTLSReqd       = wire.RepErrTLSReqd
	repErrUnknown       = wire.RepErrUnknown
	repErrShutdown      = wire.RepErrShutdown
	repErrBlockSizeReqd = wire.RepErrBlockSizeReqd
	repErrTooBig        = wire.RepErrTooBig
	repErrExtHeaderReqd = wire.RepErrExtHeaderReqd

	// maxOptionReplyLength: no option reply this client asks for is
	// longer.
	maxOptionReplyLength = 64 << 10
)

// Information types of NBD_REP_INFO.
const (
	infoExport      = wire.InfoExport
	infoName        = wire.InfoName
	infoDescription = wire.InfoDescription
	infoBlockSize   = wire.InfoBlockSize
)

// Transmission flags, as reported by Info().Flags.
const (
	FlagHasFlags        = wire.FlagHasFlags        // always set by a conforming server
	FlagReadOnly        = wire.FlagReadOnly        // the export refuses writes
	FlagSendFlush       = wire.FlagSendFlush       // NBD_CMD_FLUSH understood
	FlagSendFUA         = wire.FlagSendFUA         // NBD_CMD_FLAG_FUA understood
	FlagRotational      = wire.FlagRotational      // rotational medium
	FlagSendTrim        = wire.FlagSendTrim        // NBD_CMD_TRIM understood
	FlagSendWriteZeroes = wire.FlagSendWriteZeroes // NBD_CMD_WRITE_ZEROES understood
	FlagSendDF          = wire.FlagSendDF          // NBD_CMD_FLAG_DF understood on reads
	FlagCanMultiConn    = wire.FlagCanMultiConn    // several connections share one consistent cache
	FlagSendCache       = wire.FlagSendCache       // NBD_CMD_CACHE understood
	FlagSendFastZero    = wire.FlagSendFastZero    // NBD_CMD_FLAG_FAST_ZERO understood
)

// Commands and command flags.
const (
	cmdRead        = wire.CmdRead
	cmdWrite       = wire.CmdWrite
	cmdDisc        = wire.CmdDisc
	cmdFlush       = wire.CmdFlush
	cmdTrim        = wire.CmdTrim
	cmdCache       = wire.CmdCache
	cmdWriteZeroes = wire.CmdWriteZeroes
	cmdBlockStatus = wire.CmdBlockStatus

	cmdFlagReqOne = wire.CmdFlagReqOne
)

// Structured reply chunk flags and types; error types have bit 15 set.
const (
	chunkFlagDone = wire.ReplyFlagDone

	chunkNone        = wire.ReplyTypeNone
	chunkOffsetData  = wire.ReplyTypeOffsetData
	chunkOffsetHole  = wire.ReplyTypeOffsetHole
	chunkBlockStatus = wire.ReplyTypeBlockStatus
	chunkFlagError   = wire.ReplyTypeFlagError
	chunkError       = wire.ReplyTypeError
	chunkErrorOffset = wire.ReplyTypeErrorOffset
)

// Sizes of fixed parts of messages.
const (
	requestLen      = wire.RequestLen        // magic, flags, type, cookie, offset, length
	simpleHeaderLen = wire.SimpleReplyLen    // magic, error, cookie
	chunkHeaderLen  = wire.ChunkHeaderLen    // magic, flags, type, cookie, length
	optHeaderLen    = wire.OptReplyHeaderLen // magic, option, reply type, length (of a reply)
)

// Protocol limits.
const (
	// DefaultPort is the IANA port of NBD.
	DefaultPort = wire.DefaultPort
	// maxStringLen bounds export names and messages (proto.md: strings
	// MUST be no longer than 4096 bytes).
	maxStringLen = wire.MaxStringLen
	// maxMinBlock is the largest minimum block size a server may
	// advertise.
	maxMinBlock = wire.MaxMinBlock
	// maxStatusChunk bounds a block status chunk (2^20 extents).
	maxStatusChunk = 4 + 8<<20
)

// State flags of the base:allocation metadata context.
const (
	StateHole = wire.StateHole // the extent is not allocated on the server
	StateZero = wire.StateZero // the extent reads as zeroes
)

// metaBaseAllocation is the one metadata context this client selects.
const metaBaseAllocation = wire.MetaBaseAllocation

func optName(o uint32) string   { return wire.OptName(o) }
func repName(r uint32) string   { return wire.RepName(r) }
func cmdName(c uint16) string   { return wire.CmdName(c) }
func chunkName(t uint16) string { return wire.ReplyTypeName(t) }
func errnoName(n uint32) string { return wire.ErrnoName(n) }

package wire

// Magic numbers.
const (
	MagicInit            = 0x4e42444d41474943 // "NBDMAGIC": the server's first word
	MagicOldstyle        = 0x00420281861253   // cliserv_magic: oldstyle negotiation
	MagicOpt             = 0x49484156454f5054 // "IHAVEOPT": newstyle greeting, and every option request
	MagicOptReply        = 0x0003e889045565a9 // option reply
	MagicRequest         = 0x25609513         // transmission request
	MagicSimpleReply     = 0x67446698         // simple reply
	MagicStructuredReply = 0x668e33ef         // structured reply chunk
	MagicExtendedReply   = 0x6e8a278c         // extended-header reply chunk
)

// Handshake flags: the server's (16 bits, in the greeting) and the
// client's (32 bits, its answer).
const (
	FlagFixedNewstyle  = 1 << 0
	FlagNoZeroes       = 1 << 1
	FlagCFixedNewstyle = 1 << 0
	FlagCNoZeroes      = 1 << 1
)

// Options (NBD_OPT_*).
const (
	OptExportName      = 1
	OptAbort           = 2
	OptList            = 3
	OptStartTLS        = 5
	OptInfo            = 6
	OptGo              = 7
	OptStructuredReply = 8
	OptListMetaContext = 9
	OptSetMetaContext  = 10
	OptExtendedHeaders = 11
)

// Option reply types (NBD_REP_*); error replies have RepFlagError set.
const (
	RepAck         = 1
	RepServer      = 2
	RepInfo        = 3
	RepMetaContext = 4

	RepFlagError        = 1 << 31
	RepErrUnsup         = RepFlagError | 1
	RepErrPolicy        = RepFlagError | 2
	RepErrInvalid       = RepFlagError | 3
	RepErrPlatform      = RepFlagError | 4
	RepErrTLSReqd       = RepFlagError | 5
	RepErrUnknown       = RepFlagError | 6
	RepErrShutdown      = RepFlagError | 7
	RepErrBlockSizeReqd = RepFlagError | 8
	RepErrTooBig        = RepFlagError | 9
	RepErrExtHeaderReqd = RepFlagError | 10
)

// Information types of NBD_REP_INFO (NBD_INFO_*).
const (
	InfoExport      = 0 // size (64 bits) and transmission flags (16 bits)
	InfoName        = 1 // the export's canonical name
	InfoDescription = 2 // a description for humans
	InfoBlockSize   = 3 // minimum, preferred and maximum payload (32 bits each)
)

// Transmission flags (16 bits, NBD_FLAG_*), sent with the export's size.
const (
	FlagHasFlags           = 1 << 0  // always set by a conforming server
	FlagReadOnly           = 1 << 1  // the export refuses writes
	FlagSendFlush          = 1 << 2  // NBD_CMD_FLUSH understood
	FlagSendFUA            = 1 << 3  // NBD_CMD_FLAG_FUA understood
	FlagRotational         = 1 << 4  // rotational medium
	FlagSendTrim           = 1 << 5  // NBD_CMD_TRIM understood
	FlagSendWriteZeroes    = 1 << 6  // NBD_CMD_WRITE_ZEROES understood
	FlagSendDF             = 1 << 7  // NBD_CMD_FLAG_DF understood on reads
	FlagCanMultiConn       = 1 << 8  // several connections share one consistent cache
	FlagSendResize         = 1 << 9  // NBD_CMD_RESIZE understood
	FlagSendCache          = 1 << 10 // NBD_CMD_CACHE understood
	FlagSendFastZero       = 1 << 11 // NBD_CMD_FLAG_FAST_ZERO understood
	FlagBlockStatusPayload = 1 << 12 // NBD_CMD_BLOCK_STATUS takes a payload
)

// Commands (NBD_CMD_*).
const (
	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdCache       = 5
	CmdWriteZeroes = 6
	CmdBlockStatus = 7
	CmdResize      = 8
)

// Command flags (NBD_CMD_FLAG_*).
const (
	CmdFlagFUA        = 1 << 0
	CmdFlagNoHole     = 1 << 1
	CmdFlagDF         = 1 << 2
	CmdFlagReqOne     = 1 << 3
	CmdFlagFastZero   = 1 << 4
	CmdFlagPayloadLen = 1 << 5
)

// Structured reply chunk flags and types (NBD_REPLY_FLAG_*,
// NBD_REPLY_TYPE_*); error types have ReplyTypeFlagError set.
const (
	ReplyFlagDone = 1 << 0

	ReplyTypeNone        = 0
	ReplyTypeOffsetData  = 1
	ReplyTypeOffsetHole  = 2
	ReplyTypeBlockStatus = 5
	ReplyTypeFlagError   = 1 << 15
	ReplyTypeError       = ReplyTypeFlagError | 1
	ReplyTypeErrorOffset = ReplyTypeFlagError | 2
)

// Error values of replies (NBD_E*). They are the Linux errno numbers;
// a value the protocol does not define counts as EINVAL.
const (
	EPERM     = 1
	EIO       = 5
	ENOMEM    = 12
	EINVAL    = 22
	ENOSPC    = 28
	EOVERFLOW = 75
	ENOTSUP   = 95
	ESHUTDOWN = 108
)

// Sizes of the fixed parts of messages.
const (
	GreetingLen         = 18 // NBDMAGIC, IHAVEOPT, handshake flags
	OptHeaderLen        = 16 // IHAVEOPT, option, length
	OptReplyHeaderLen   = 20 // magic, option, reply type, length
	RequestLen          = 28 // magic, flags, type, cookie, offset, length
	SimpleReplyLen      = 16 // magic, error, cookie
	ChunkHeaderLen      = 20 // magic, flags, type, cookie, length
	ExportNameReplyLen  = 10 // size, transmission flags (NBD_OPT_EXPORT_NAME)
	ExportNameZeroesLen = 124
)

// Protocol limits.
const (
	// DefaultPort is the IANA port of NBD.
	DefaultPort = "10809"
	// MaxStringLen bounds export names and messages: strings MUST be no
	// longer than 4096 bytes.
	MaxStringLen = 4096
	// MaxMinBlock is the largest minimum block size a server may
	// advertise.
	MaxMinBlock = 64 << 10
	// DefaultMaxPayload is the payload every server accepts in one
	// request when it advertised no block sizes.
	DefaultMaxPayload = 32 << 20
)

// State flags of the base:allocation metadata context.
const (
	StateHole = 1 << 0 // the extent is not allocated
	StateZero = 1 << 1 // the extent reads as zeroes
)

// MetaBaseAllocation is the metadata context of allocation status.
const MetaBaseAllocation = "base:allocation"

// Package wire holds the numbers of the Network Block Device protocol
// (doc/proto.md of github.com/NetworkBlockDevice/nbd), written once for
// both sides: the client in package nbd and the small server in
// nbd/nbdserver. It has no logic beyond naming values for messages.
//
// # Vocabulary
//
//   - Handshake: the negotiation before data moves. The server greets
//     with MagicInit, then MagicOpt ("IHAVEOPT", fixed newstyle) and its
//     handshake flags (Flag*); the client answers with its flags
//     (FlagC*) and then sends options (Opt*), each framed as MagicOpt,
//     the option, the length of its data and the data. The server answers
//     each option with one or more option replies (MagicOptReply, the
//     option, a reply type Rep*, a length and data); error replies have
//     RepFlagError set.
//   - Information (Info*): what an NBD_REP_INFO reply to NBD_OPT_INFO or
//     NBD_OPT_GO describes: the export's size and transmission flags,
//     its name, its description, its block sizes.
//   - Transmission flags (Flag* of 16 bits, NBD_FLAG_HAS_FLAGS and the
//     rest): what the export allows, sent with its size.
//   - Transmission: requests (MagicRequest, command flags CmdFlag*, a
//     command Cmd*, a cookie, an offset and a length: RequestLen bytes)
//     answered by simple replies (MagicSimpleReply, an error value E*, the
//     cookie) or, when negotiated, structured reply chunks
//     (MagicStructuredReply, ReplyFlag*, ReplyType*).
//
// Every integer on the wire is big endian. The constants are untyped so
// that each side uses them at the width its messages have.
package wire

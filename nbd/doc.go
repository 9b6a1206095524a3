// Package nbd is a userspace client of the Network Block Device protocol
// (doc/proto.md of github.com/NetworkBlockDevice/nbd), written against the
// standard library only; no kernel module and no /dev/nbd device are
// involved. ahvfs uses it to read the disks that XCP-ng hosts (and qemu-nbd
// or nbdkit in tests) export over NBD, as an io.ReaderAt.
//
// # Vocabulary
//
//   - Server, export: a server offers one or more exports, each a range of
//     bytes with a size, chosen by name (the empty name is the server's
//     default export).
//   - Handshake: the negotiation before data moves. This client speaks
//     fixed newstyle only: the server greets with NBDMAGIC/IHAVEOPT, then
//     the client sends options and the server answers each with option
//     replies, NBD_REP_ACK or an error NBD_REP_ERR_*. Options used here, in
//     order: NBD_OPT_STARTTLS (when TLS is asked for; TLS is then
//     mandatory, there is no downgrade), NBD_OPT_STRUCTURED_REPLY,
//     NBD_OPT_SET_META_CONTEXT "base:allocation", and NBD_OPT_GO with the
//     export name and an NBD_INFO_BLOCK_SIZE request; NBD_OPT_EXPORT_NAME
//     only when the server does not know NBD_OPT_GO.
//   - Transmission: after the handshake the client sends requests
//     (NBD_CMD_READ, NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC), each with a
//     cookie (once called handle), and the server replies in any order,
//     each reply naming its cookie.
//   - Simple reply: a fixed header with an error value, followed by the
//     data of a successful read.
//   - Structured reply: one or more chunks for one request, the last with
//     NBD_REPLY_FLAG_DONE. Read data comes in OFFSET_DATA chunks, zeroes as
//     OFFSET_HOLE chunks (nothing sent on the wire), failures as ERROR or
//     ERROR_OFFSET chunks with a message.
//   - Size constraints: the server's minimum block size (every request is
//     aligned to it), preferred block size, and maximum payload of one
//     request (32 MiB unless the server says otherwise).
//   - Block status: the allocation map (hole, zero) of a range, from the
//     base:allocation metadata context.
//
// # Use
//
//	c, err := nbd.Dial(ctx, nbd.Options{Address: "10.0.0.7:10809", Export: name, CAPEM: cert})
//	defer c.Close()
//	n, err := c.ReadAtContext(ctx, buf, off)
//
// or, from a URI, o, err := nbd.ParseURI("nbds://host/export").
//
// A Client is safe for concurrent use. Every read is split into requests
// of at most Info().MaxRequest bytes that are all put in flight at once, up
// to Options.QueueDepth requests for the whole connection; one goroutine
// receives the replies and hands each to its request by cookie. Data is
// received in pieces and copied into the caller's buffer under a
// per-request lock, so that a read whose context ends returns at once and
// its buffer is never written afterwards.
//
// # Failures
//
// A server's refusal during the handshake is an *OptionError matching
// ErrUnknownExport, ErrTLSRequired, ErrPolicy, ErrShutdown or
// ErrUnsupported; a refused NBD_OPT_STARTTLS matches ErrTLSUnavailable. An
// error the server reports for one request is a *CommandError that
// unwraps to the matching syscall.Errno; the connection goes on.
//
// The reply decoder is strict: a bad magic, a reply to a cookie not in
// flight, a length out of range, data outside the request or overlapping
// other data of the same reply, or an unknown non-error chunk type is a
// protocol violation (ErrProtocol). Since the stream can no longer be
// trusted, the connection is dropped. When the connection ends (the
// server hangs up, a network error, a protocol violation, or no reply for
// Options.IOTimeout while requests are outstanding), every request in
// flight and every later one fails with an error matching
// ErrConnectionLost that wraps the cause (io.ErrUnexpectedEOF for a
// hang-up). There is no reconnection: dial again.
//
// Close sends NBD_CMD_DISC; the server answers what is still in flight and
// closes the connection.
//
// Not implemented: writes, trim, flush and cache commands, extended
// headers, and metadata contexts other than base:allocation.
package nbd

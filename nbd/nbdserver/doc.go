// Package nbdserver is a small read-only Network Block Device server
// (doc/proto.md of github.com/NetworkBlockDevice/nbd) over io.ReaderAt.
// It serves a restore point's disks to qemu-img (package export) and the
// disks of the XCP-ng simulator; it is not meant to be a general NBD
// server.
//
// # Vocabulary
//
//   - Export: a named, sized range of bytes a client reads; here an
//     Export value (name, size, an io.ReaderAt, a description). Options
//     .Lookup turns the name a client sends (exactly as sent: an XCP-ng
//     name looks like "/<vdi-uuid>?session_id=OpaqueRef:…") into one,
//     per connection, so exports may come and go and names may carry
//     credentials the caller checks.
//   - Handshake: fixed newstyle negotiation only. The server greets; the
//     client sends options, each answered by option replies. Supported:
//     NBD_OPT_EXPORT_NAME; NBD_OPT_INFO and NBD_OPT_GO with
//     NBD_INFO_EXPORT always and NBD_INFO_NAME, NBD_INFO_DESCRIPTION
//     and NBD_INFO_BLOCK_SIZE (1, 4096, 32 MiB) when asked for;
//     NBD_OPT_LIST when Options.List is set (NBD_REP_ERR_POLICY
//     otherwise); NBD_OPT_ABORT; NBD_OPT_STARTTLS when Options.TLS is
//     set. Everything else (structured replies, metadata contexts,
//     extended headers) gets NBD_REP_ERR_UNSUP, and clients fall back to
//     simple replies. Option data is bounded (64 KiB; export names 4096
//     bytes).
//   - TLS: after NBD_REP_ACK to NBD_OPT_STARTTLS the server runs
//     tls.Server over the connection and everything after is encrypted;
//     a second NBD_OPT_STARTTLS gets NBD_REP_ERR_INVALID. With
//     Options.RequireTLS (proto.md's FORCEDTLS mode) every option but
//     NBD_OPT_STARTTLS and NBD_OPT_ABORT gets NBD_REP_ERR_TLS_REQD until
//     TLS is up, and NBD_OPT_EXPORT_NAME closes the connection; without
//     it TLS is the client's choice.
//   - Transmission: every export is read-only and can be shared by
//     several connections (NBD_FLAG_READ_ONLY, NBD_FLAG_CAN_MULTI_CONN).
//     Requests are read in order, several may be in flight: up to 8
//     reads per connection run at once and are answered (simple
//     replies) as each finishes. NBD_CMD_READ outside the export or
//     longer than 32 MiB gets NBD_EINVAL, a failed read NBD_EIO (and
//     Server.Err reports it); NBD_CMD_WRITE (its payload skipped),
//     NBD_CMD_TRIM and NBD_CMD_WRITE_ZEROES get NBD_EPERM; other commands
//     NBD_EINVAL. NBD_CMD_DISC waits for the replies in flight, then the
//     server closes the connection (TLS first).
//
// Without structured replies, qemu's NBD client (7.2 at least) cannot read
// the tail of an export whose size is not a multiple of 512 bytes: it
// expects the reply to fill a whole sector and loses the framing. Disks
// are whole sectors; keep other exports for clients such as package nbd.
//
// # Lifetime
//
// Serve accepts connections until Close is called or its context ends;
// Close also closes every connection and waits for every goroutine of the
// server, reads under way included. A client that breaks the protocol
// loses its connection and is logged; it is not an error of the server.
// Server.Err reports what is: a failed read of an export, a failed
// Lookup, a failed accept.
package nbdserver

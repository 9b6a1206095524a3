// Package xapi is the XAPI client of ahvfs: the one place that speaks to
// XCP-ng and XenServer pools. It calls the XenAPI over JSON-RPC 2.0
// (POST https://MASTER/jsonrpc) and uses the pool master's HTTP handlers
// for bulk data (raw VDI and XVA export and import). It is written against
// the standard library only.
//
// # Vocabulary
//
//   - Session: what session.login_with_password returns, an opaque
//     reference that every other call takes as its first parameter. A
//     session lives until session.logout or until XAPI forgets it (a
//     restart, an idle timeout); a call on a forgotten session fails with
//     SESSION_INVALID, and Call then logs in again once and repeats the call
//     once. Only the pool master accepts logins: a pool member answers
//     HOST_IS_SLAVE with the master's address, which Connect follows once.
//   - Ref: an opaque reference to an object ("OpaqueRef:…"), valid in
//     this pool only; NullRef ("OpaqueRef:NULL") means "no object". UUIDs
//     are the stable names; refs may change across XAPI restarts.
//   - Record: the fields of one object (X.get_record, X.get_all_records),
//     decoded here into VM, VBD, VDI, SR, Network, VIF, Host, GuestMetrics.
//     Integers may arrive as JSON numbers or decimal strings, date-times as
//     "20261204T03:19:07Z" or RFC 3339 (the epoch means unset and becomes
//     the zero time); a missing or null field is the zero value.
//   - Task: the handle of an asynchronous call ("Async.VM.snapshot") or of
//     an HTTP transfer. WaitTask polls it to the end, returns its result
//     (XML-RPC <value> text, unwrapped), turns a failure into an *Error,
//     cancels it when the context ends and destroys its record after
//     reading it.
//   - CBT bitmap: VDI.list_changed_blocks compares two snapshots of a
//     disk with changed block tracking on and answers a base64 bitmap, one
//     bit per 64 KiB block, the first block in the most significant bit of
//     the first byte. Bitmap decodes it; Extents turns it into byte ranges.
//   - NBD info: VDI.get_nbd_info lists where the disk of a VDI can be read
//     over NBD (address, port, the server's certificate and subject, and an
//     export name that embeds this client's session, so the session must
//     stay open while the disk is read and the name must not be logged).
//
// # Failures
//
// A failure XAPI reports is an *Error (its code and parameters); IsCode
// tests the code, and errors.Is(err, ErrNotFound) holds for HANDLE_INVALID
// and UUID_INVALID. A transfer the host refuses is an *HTTPError. Every
// error names the XAPI method or HTTP handler. Calls are never retried,
// except once after SESSION_INVALID; callers must not repeat them either.
//
// # Secrets
//
// Passwords are never logged or put in errors. Session references appear
// in logs and errors cut to their first characters ("OpaqueRef:1a2b3c4d…"),
// including in the URLs of HTTP transfers, which carry the session in
// their query.
//
// # What it does not do
//
// It does not read disks over NBD (package nbd does), parse or write XVA
// archives beyond streaming them, subscribe to events, or choose anything:
// callers decide which VMs, snapshots and SRs to use. TLS verification is
// on by default (system roots plus Options.CAFile and CAPEM).
package xapi

// Package iscsi is a userspace iSCSI initiator (RFC 7143) written against
// the standard library only. ahvfs uses it to read and write the disks of
// Nutanix AHV volume groups, which the cluster exposes as iSCSI targets at
// its Data Services IP.
//
// # Vocabulary
//
//   - Portal: the TCP address (host:port, default port 3260) of a target's
//     network endpoint. A discovery portal answers SendTargets; a Nutanix
//     Data Services IP then redirects each login to the controller VM that
//     serves the volume group (login redirection, status class 1).
//   - Target: a named iSCSI endpoint (an IQN such as
//     "iqn.2010-06.com.nutanix:vg1") that exposes one or more LUNs.
//   - Initiator: this package. It names itself with an IQN too
//     (Options.InitiatorIQN).
//   - Session: one logged-in nexus between the initiator and a target. It
//     carries one TCP connection here; commands are numbered by CmdSN and
//     the target grants a window of command numbers up to MaxCmdSN.
//   - PDU: a protocol data unit, a 48-byte basic header segment (BHS),
//     optional additional header segments, and an optional data segment,
//     each optionally protected by a CRC32C digest.
//   - Task: one SCSI command in flight, identified by its initiator task tag
//     (ITT). Reads return data in Data-In PDUs; writes send data as
//     immediate data in the command PDU, as unsolicited Data-Out PDUs, or in
//     answer to the target's Ready To Transfer (R2T) PDUs.
//   - LUN: a logical unit, here a block device of Size() bytes in blocks
//     of BlockSize() bytes, read and written with READ(16) and WRITE(16).
//   - CHAP: the challenge-handshake authentication of the security phase of
//     login, one-way (the target checks the initiator) or mutual (the
//     initiator checks the target as well).
//
// # Use
//
//	s, err := iscsi.Dial(ctx, iscsi.Options{Portal: "10.0.0.5", TargetIQN: iqn})
//	defer s.Close(ctx)
//	lun, err := s.LUN(ctx, 1)
//	n, err := lun.ReadAtContext(ctx, buf, off)
//
// A LUN is safe for concurrent use: every ReadAt and WriteAt is split into
// commands of at most Options.MaxTransferLength bytes that are all put in
// flight at once, up to Options.QueueDepth commands per session, and the
// data of a read is received straight into the caller's buffer.
//
// # Failures
//
// When the connection drops or the target stops answering (no PDU for
// Options.IOTimeout while commands are outstanding; NOP-Out pings probe an
// idle connection), the session logs in again (following redirects again)
// and reissues every command that had not completed, until
// Options.RecoveryTimeout has passed; after that every outstanding and
// future command fails with an error that wraps ErrSessionFailed.
//
// Logins during that recovery are retried with backoff (50 ms doubling to
// 2 s) while the portal refuses the connection and while the target
// refuses the login transiently (LoginError.Transient): "target not found"
// (status 0x0203), "target removed" (0x0204) or a target error such as
// "service unavailable" or "out of resources" (0x03xx). A restarting
// target, tgtd or a Nutanix CVM, accepts connections before its targets are
// configured again and answers "target not found" meanwhile. Any other
// refusal ends recovery at once: bad credentials or a refused
// authorization (ErrAuth) cannot get better by asking again.
//
// Dial, the first login, makes one attempt and fails fast on every
// refusal: a target that is not found then is most likely a wrong name or
// a volume group that is not attached (errors.Is(err, ErrTargetNotFound)).
// A caller that expects the target to appear shortly may retry Dial itself
// when the *LoginError is Transient.
//
// SCSI errors are returned as *SenseError or *StatusError.
//
// The error recovery level is 0: a connection failure is recovered by a new
// login and session reinstatement, never by SNACK.
package iscsi

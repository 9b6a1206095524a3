// Package backend is where the repository's immutable files live: packs,
// their parity sidecars, restore-point record files, config.json and what
// is set aside in quarantine/. The engine reaches them only through the
// Backend interface, so the same repository can sit in a local directory
// or in S3-compatible object storage.
//
// Vocabulary:
//   - object: a named sequence of bytes, written whole by one Put and read
//     by ranges. There is no append, no partial overwrite and no rename:
//     the shape every object store offers.
//   - name: a slash-separated relative path such as config.json,
//     packs/ab/<32 hex>.pack, packs/ab/<32 hex>.par, records/rp/<32 hex>.rec
//     or quarantine/<file>. CheckName states the rules.
//   - prefix: List returns every object whose name starts with a prefix,
//     in byte order of the names. "packs/" and "packs/a" are both prefixes;
//     directories are not objects.
//
// The contract every implementation keeps (and backendtest checks):
//   - Put is atomic and durable when it returns: a reader sees the old
//     object (or none) until Put returns, then the new one, never a part;
//     after a crash an object is absent, old or complete.
//   - A missing object is an error satisfying errors.Is(err, ErrNotExist)
//     (which is fs.ErrNotExist); Delete of a missing object succeeds.
//   - Every method that does I/O takes a context first and fails with its
//     error once it is done. Errors name the operation and the object.
//   - All methods, and ReadAt of an Object, are safe for concurrent use.
//
// Implementations:
//   - Local: a directory on a local filesystem, each object a plain file
//     (the layout of docs/FORMAT.md, so existing repositories open as they
//     are). Put writes a hidden temporary file beside the target, fsyncs
//     it, renames it into place and fsyncs the directory.
//   - S3: a bucket of an S3-compatible object store (aws-sdk-go-v2), which
//     several hosts may share: multipart uploads for large objects, ranged
//     GETs conditional on the ETag, CRC-32C on every body, retries with
//     backoff. s3test starts versitygw or gofakes3 for its tests.
//   - Mem: objects in memory, for tests and as a model.
//   - Faulty: a decorator for tests that injects failures, short writes,
//     bit flips on read and crashes, deterministically, and records every
//     operation so a test can re-run a job crashing at each step in turn.
//
// Decorators (retry, rate limits, metrics) wrap a Backend the way Faulty
// does. The conformance suite is in package backendtest.
package backend

// Package engine is the ahvfs repository: a deduplicating block store for
// virtual-machine disks.
//
// Vocabulary:
//   - chunk: a fixed-size, disk-aligned piece of a disk (default 1 MiB). Its
//     ID is the BLAKE3-256 of its plaintext (keyed BLAKE3 when encrypted).
//     All-zero chunks are never stored.
//   - blob: a stored chunk: compressed (S2 by default, zstd on request) unless that does not shrink it,
//     then optionally sealed with AES-256-GCM.
//   - pack: an append-only file holding many blobs, sealed with a footer (the
//     blob table and per-shard checksums) and a Reed-Solomon parity sidecar.
//   - page: a fixed number of consecutive chunk IDs of one disk; pages are
//     stored as blobs too, so unchanged pages are shared between restore points.
//   - manifest: a disk's list of page IDs.
//   - restore point: one VM at one time: its disks' manifests, its
//     configuration and the job's metadata, committed in one synced batch.
//
// The repository's immutable files — packs, parity sidecars, record files,
// config.json and quarantine/ — are objects of a backend (engine/backend:
// a local directory by default, OpenOptions.Backend otherwise), written
// whole by atomic, durable Puts. The index (chunk ID → pack location) and
// the catalog live in Pebble in the local directory, with the checkpoints,
// the writer lock and the journal. A pack is durable in the backend before
// the index batch that names it commits, so a crash leaves the old state or
// the new one, never a restore point with missing chunks. docs/FORMAT.md
// specifies every on-disk structure.
//
// engine imports no other ahvfs package but engine/backend and small
// internal helpers (docs/architecture.md; internal/layers enforces it).
package engine

// Package cbt turns changed-block tracking into stored restore points: it
// aligns the changed regions a cluster reports to the repository's chunks
// (a read plan) and executes the plan into any sink, reading from any
// io.ReaderAt with several reads in flight. It knows nothing of Prism,
// iSCSI or the repository's format.
//
// # Vocabulary
//
//   - Region: a byte range of a disk the cluster reports, holding data or
//     ZEROED (reads as zeros). Against a reference snapshot, the regions
//     are what changed; without one (a full), the allocated ranges.
//   - Plan: chunk-aligned extents covering a disk exactly once, in order,
//     each of a Kind: Read (read the bytes and store them), Zero (all
//     zeros: nothing read or stored), Unchanged (equal to the parent
//     restore point's chunk) or Patch (a chunk changed only in part: its
//     Parts are read, the rest is taken from the parent restore point).
//     Align builds plans; AlignPatched also makes Patch extents of chunks
//     whose changed bytes are at most a threshold; Full reads everything;
//     FilePlan reads only the data of a sparse file (import).
//   - Sink: where a plan's chunks go (*engine.DiskWriter): WriteAt for
//     read or patched data, Zero and Unchanged for the rest.
//
// # Ingest
//
// Ingest runs Options.Workers readers (default: the CPUs) over the Read
// extents in units of Options.ReadSize, hashing and compressing in the
// sink on the same goroutines, and twice as many workers of their own for
// Patch chunks (each waits for two reads in turn: its parts from the
// source, the rest from Options.Base). Memory is bounded by workers ×
// read size. A source that implements ContextReaderAt is read with
// Ingest's context, so cancelling it abandons reads in flight.
package cbt

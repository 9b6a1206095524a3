// Package cbt turns changed regions into a read plan: it coalesces regions,
// aligns them to the repository's chunks, drops zeroed ranges, and feeds the
// engine's ingest session from any io.ReaderAt.
package cbt

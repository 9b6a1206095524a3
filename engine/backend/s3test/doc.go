// Package s3test starts S3-compatible servers for tests: a real versitygw
// (the binary `make deps` builds and caches; AHVFS_VERSITYGW names it, else
// PATH) on 127.0.0.1, or gofakes3 in process for fast unit tests. Each
// test gets fresh buckets and the backend options that reach them.
package s3test

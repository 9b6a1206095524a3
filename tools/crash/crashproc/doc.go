// Package crashproc runs ahvfs commands for the crash tools
// (tools/crash/...): each in its own process group, so that SIGKILL takes
// its children too; bounded so that a hung command is a failure, not a
// hung tool; with its output kept for the report and scanned for crashes.
package crashproc

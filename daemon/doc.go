// Package daemon runs protection policies on a schedule (`ahvfs daemon`):
// it reads and checks the configuration file (every problem at once),
// resolves each policy's VMs at every run (names, globs, Prism categories;
// a VM two policies select is backed up by the first only, and reported),
// queues jobs under global and per-cluster limits, runs a missed run once
// at start, applies retention and DR sync after backups, verifies a share
// of the packs each day, keeps the job history in the repository, and
// serves Prometheus metrics and /healthz. cmd/ahvfs wires it to signals
// (SIGTERM stops, SIGHUP reloads) and to the repository.
package daemon

// Package failover runs recovery plans at a DR site (`ahvfs failover`):
// a plan (TOML, docs/failover.md) names the DR repository, the two sites,
// the VMs in stages with delays and scripts, and network mappings for
// tests and for real failovers. A test failover restores the newest
// replicated point of each VM, renamed and on the test networks, powered
// on stage by stage; every step is recorded in the plan's state beside
// the DR repository before and after it happens, so that status tells the
// truth and undo removes exactly what the failover made, after a kill too.
package failover

// Package failover runs recovery plans between two sites (`ahvfs
// failover`, `ahvfs failback`): a plan (TOML, docs/failover.md) names the
// DR and source repositories, the two sites, the VMs in stages with
// delays and scripts, and network mappings for tests and for real
// failovers.
//
// A test failover restores the newest replicated point of each VM at the
// DR site, renamed and on the test networks (instantly with instant_nfs);
// an unplanned one the same under the VMs' own names on the production
// networks; a planned one first shuts the source VMs down, backs them up
// last and syncs them (move.go, shared with failback). Each VM is brought
// up by one piece of code (vmup.go) whatever the mode, stage by stage.
// Permanent makes the DR site the source of truth; failback moves the VMs
// back, sending only what changed at DR.
//
// Every step is recorded in the plan's state beside the DR repository
// (state.go, planstate.go) before and after it happens, so that status
// tells the truth, the same command run again after a kill goes on where
// it stopped, and undo removes exactly what the failover made.
package failover

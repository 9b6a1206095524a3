// Package console is the web console's JSON API, /api/v1/, served by
// `ahvfs daemon --http` beside /metrics. Every route but login is wrapped
// by console/auth with the one action it performs, and every answer is cut
// to the VMs the user's scopes let it see: a VM outside them does not
// exist for that user (404, audited), in any page or response.
//
// Vocabulary:
//
//   - Source: what the console shows, as the daemon knows it: the VMs its
//     policies protect (VMStatus) and their restore points (Point).
//   - VMStatus: one protected VM: its policy, last backup and result, its
//     newest restore point and whether that is within the policy's RPO.
//   - Point: one restore point as the console lists it.
//
// Routes (docs/console.md): POST /api/v1/login, POST /api/v1/logout, GET
// /api/v1/me, GET /api/v1/vms (failing VMs first), GET
// /api/v1/vms/{vm}/points (newest first).
package console

// Package auth decides who may use the web console and its API, and what
// each of them may do. It is a library: the daemon mounts its handlers and
// wraps its own; `ahvfs user` edits the users file through it.
//
// Vocabulary:
//
//   - User: a console account, kept in the users file. It has a name, a
//     role, optional scopes, a password hash and any number of API tokens.
//   - Users file: a versioned JSON document (default /etc/ahvfs/users.json,
//     mode 0600) holding every user. Writers (Update) take an flock on
//     FILE.lock and replace the file atomically; readers (Load, the
//     Authenticator) need no lock and see the old set or the new one. The
//     Authenticator re-reads it when it changes, so `ahvfs user del` ends
//     the user's sessions and tokens without a restart.
//   - Role: admin, operator or restore-files. A role allows a fixed set of
//     actions (Allowed).
//   - Action: what a request does: view, browse, download, backup,
//     restore, lock, forget, admin. Every console handler is wrapped by
//     Require with the one action it performs.
//   - Scope: VM selectors (name:GLOB, uuid:UUID, category:KEY:VALUE). A
//     user without scopes sees every VM; with scopes, the VMs any selector
//     matches (User.Sees). Handlers filter what they show with it.
//   - Password hash: argon2id, stored as a PHC string
//     ($argon2id$v=19$m=65536,t=3,p=2$SALT$HASH).
//   - API token: "ahvfs_<id>_<secret>", shown once by `ahvfs user token`;
//     the users file keeps only its id and the SHA-256 of its secret. A
//     script sends it as "Authorization: Bearer TOKEN".
//   - Session: a browser login, held in memory (a restart logs everyone
//     out). Its random ID travels in the ahvfs_session cookie (Secure,
//     HttpOnly, SameSite=Strict); it ends after 30 minutes idle or 12 hours
//     in all, when its user is removed, or when the password changes.
//   - CSRF token: a second random value per session, returned at login.
//     A state-changing request authenticated by the cookie must repeat it
//     in the X-CSRF-Token header; Bearer requests need none (a browser
//     never adds the header on its own).
//   - Login limiter: after 5 failed logins for a user name or from a client
//     address, further attempts are refused (429, Retry-After) for a time
//     that doubles from 1 s up to 15 min.
//   - Audit log: one JSON line per login, logout and refusal (and whatever
//     the console's handlers record), appended to a file.
package auth

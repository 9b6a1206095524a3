// Package layers holds the test that keeps the repository's layering true:
// docs/architecture.md's "Rooms" table names each room's packages and the
// rooms it may import, and the test fails when a package's (non-test)
// imports reach a room its row does not list, or when a package belongs to
// no room. The table is the only place the rules are written.
package layers

// Package rptreetest holds helpers for tests of rptree and of the packages
// that serve or read its tree (fusefs, extract, the CLI): VM names that
// need escaping, a repository holding one restore point of each, a
// hostile guest filesystem, and opening a tree.
package rptreetest

package extract

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// SymlinkPolicy says what Copy does with a symbolic link whose target
// leaves the destination directory.
type SymlinkPolicy string

// The symlink policies.
const (
	// SymlinksRelative (the default) rewrites an absolute target that
	// points inside the copied tree into a relative one and skips every
	// other link that leaves the destination.
	SymlinksRelative SymlinkPolicy = "relative"
	// SymlinksSkip skips every link that leaves the destination, absolute
	// targets included.
	SymlinksSkip SymlinkPolicy = "skip"
	// SymlinksKeep writes every link as it is and reports those that
	// leave the destination.
	SymlinksKeep SymlinkPolicy = "keep"
)

// ParseSymlinkPolicy parses "relative", "skip" or "keep"; "" is
// SymlinksRelative.
func ParseSymlinkPolicy(s string) (SymlinkPolicy, error) {
	switch p := SymlinkPolicy(s); p {
	case "":
		return SymlinksRelative, nil
	case SymlinksRelative, SymlinksSkip, SymlinksKeep:
		return p, nil
	}
	return "", fmt.Errorf("symlink policy %q: want relative, skip or keep", s)
}

// Link is a symbolic link Copy reports.
type Link struct {
	// Path is the link's path below the restore point (disk-N/part-M/...).
	Path string `json:"path"`
	// Target is the link's target in the guest.
	Target string `json:"target"`
	// Written is the target written on the host; empty when the link was
	// not written.
	Written string `json:"written,omitempty"`
}

// linkDecision is what to do with one link.
type linkDecision struct {
	write     string // target to write; "" to skip the link
	outside   bool   // the target leaves the destination: report the link
	rewritten bool   // write is a relative form of an absolute target
}

// decideLink applies policy to a link with target target at tree path
// link (below the restore point), copied as part of the tree path item,
// into host directory hostDir below the destination root to (both
// absolute, without symbolic links).
func decideLink(policy SymlinkPolicy, target, link, item, hostDir, to string) linkDecision {
	abs := strings.HasPrefix(target, "/")
	checkable := !dotDotAfterName(target)
	var outside bool
	if abs {
		outside = !checkable || !within(path.Clean(target), to)
	} else {
		outside = !checkable || !within(path.Join(hostDir, target), to)
	}
	switch policy {
	case SymlinksKeep:
		return linkDecision{write: target, outside: outside}
	case SymlinksSkip:
		if outside {
			return linkDecision{outside: true}
		}
		return linkDecision{write: target}
	}
	// SymlinksRelative.
	if abs && checkable {
		guest := path.Join(fsRoot(link), path.Clean(target))
		if within(guest, item) {
			rel, err := filepath.Rel(path.Dir(link), guest)
			if err == nil {
				return linkDecision{write: rel, rewritten: true}
			}
		}
		return linkDecision{outside: true}
	}
	if outside {
		return linkDecision{outside: true}
	}
	return linkDecision{write: target}
}

// dotDotAfterName reports whether target has a ".." after a name
// ("a/../b"): where it leads depends on whether "a" is a link, so it cannot
// be checked without following links.
func dotDotAfterName(target string) bool {
	named := false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if named {
				return true
			}
		default:
			named = true
		}
	}
	return false
}

// within reports whether the clean absolute path p is root or below it.
func within(p, root string) bool {
	return p == root || root == "/" || strings.HasPrefix(p, root+"/")
}

// fsRoot is the tree path of the guest filesystem holding tree path p:
// its first two components, disk-N/part-M.
func fsRoot(p string) string {
	comps := strings.SplitN(p, "/", 3)
	return strings.Join(comps[:min(2, len(comps))], "/")
}

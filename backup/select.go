package backup

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
)

// matchVM reports whether a pattern (glob on the name, or the UUID)
// selects v. Names are matched case-sensitively, UUIDs without case.
func matchVM(v nutanix.VM, pat string) bool {
	if strings.EqualFold(pat, v.UUID) {
		return true
	}
	ok, _ := path.Match(pat, v.Name)
	return ok
}

// SelectVMs returns the VMs that match include (all when empty) and no
// exclude pattern, sorted by name. unmatched lists include patterns that
// selected nothing (a typo should not pass silently).
func SelectVMs(all []nutanix.VM, include, exclude []string) (sel []nutanix.VM, unmatched []string) {
	hit := make([]bool, len(include))
	for _, v := range all {
		in := len(include) == 0
		for i, p := range include {
			if matchVM(v, p) {
				in, hit[i] = true, true
			}
		}
		for _, p := range exclude {
			if matchVM(v, p) {
				in = false
			}
		}
		if in {
			sel = append(sel, v)
		}
	}
	for i, p := range include {
		if !hit[i] {
			unmatched = append(unmatched, p)
		}
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].Name < sel[j].Name })
	return sel, unmatched
}

// Select returns the VMs of all to back up, sorted by name: those that
// match a pattern of vms (a glob on the name, or a UUID) or carry one of
// cats, minus those that match a pattern of exclude. With neither vms nor
// cats, every VM. The VMs of each category are asked of cl once
// (VMsInCategories); a VM it names that is not in all is ignored.
// unmatched lists what selected no VM of all, before exclusion: the
// patterns as given, the categories as "category KEY:VALUE". Without cats,
// Select is SelectVMs and does no I/O.
func Select(ctx context.Context, cl nutanix.Inventory, all []nutanix.VM, vms, exclude []string, cats []nutanix.Category) (sel []nutanix.VM, unmatched []string, err error) {
	if len(cats) == 0 {
		sel, unmatched = SelectVMs(all, vms, exclude)
		return sel, unmatched, nil
	}
	listed := map[string]bool{}
	for _, v := range all {
		listed[strings.ToLower(v.UUID)] = true
	}
	inCat := map[string]bool{}
	for _, c := range cats {
		if err := c.Validate(); err != nil {
			return nil, nil, fmt.Errorf("select VMs: %w", err)
		}
		ids, err := cl.VMsInCategories(ctx, []nutanix.Category{c})
		if err != nil {
			return nil, nil, fmt.Errorf("select the VMs of category %s: %w", c, err)
		}
		hit := false
		for _, id := range ids {
			id = strings.ToLower(id)
			if listed[id] {
				inCat[id], hit = true, true
			}
		}
		if !hit {
			unmatched = append(unmatched, "category "+c.String())
		}
	}
	byPattern, patUnmatched := SelectVMs(all, vms, nil)
	if len(vms) == 0 {
		byPattern = nil // no pattern: only the categories select
	}
	picked := map[string]bool{}
	for _, v := range byPattern {
		picked[strings.ToLower(v.UUID)] = true
	}
	for _, v := range all {
		id := strings.ToLower(v.UUID)
		if !picked[id] && !inCat[id] {
			continue
		}
		if slices.ContainsFunc(exclude, func(p string) bool { return matchVM(v, p) }) {
			continue
		}
		sel = append(sel, v)
	}
	sort.SliceStable(sel, func(i, j int) bool { return sel[i].Name < sel[j].Name })
	return sel, append(patUnmatched, unmatched...), nil
}

// plannedDisk is a disk the job stores, with its restore point index.
type plannedDisk struct {
	nutanix.Disk
	N int // disk-N
}

// backupDisks returns the disks to store: the VM's backup disks (no
// CD-ROMs, no volume group attachments) in bus/index order, numbered by
// that order (so excluding one does not renumber the others), minus the
// excluded ones. A pattern is "ADDR" or "VMGLOB:ADDR", ADDR a glob on
// "scsi.1" or a disk UUID.
func backupDisks(v nutanix.VM, excludes []string) (keep []plannedDisk, excluded map[string]bool) {
	excluded = map[string]bool{}
	for i, d := range v.BackupDisks() {
		skip := false
		for _, p := range excludes {
			skip = skip || excludesDisk(p, v, d)
		}
		if skip {
			excluded[d.UUID] = true
			continue
		}
		keep = append(keep, plannedDisk{Disk: d, N: i})
	}
	return keep, excluded
}

// excludesDisk reports whether the --exclude-disk pattern p ("scsi.1",
// "sata.*", a disk UUID, or "VMGLOB:scsi.1") names disk d of v.
func excludesDisk(p string, v nutanix.VM, d nutanix.Disk) bool {
	addr := p
	if vmPat, a, ok := strings.Cut(p, ":"); ok {
		if !matchVM(v, vmPat) {
			return false
		}
		addr = a
	}
	if strings.EqualFold(addr, d.UUID) {
		return true
	}
	ok, _ := path.Match(strings.ToLower(addr), d.Address())
	return ok
}

// unmatchedDiskExcludes returns the exclude patterns that name no disk of
// the selected VMs: like a --vm that matches nothing, most likely a typo.
func unmatchedDiskExcludes(vms []nutanix.VM, excludes []string) []string {
	var out []string
	for _, p := range excludes {
		hit := false
		for _, v := range vms {
			for _, d := range v.BackupDisks() {
				hit = hit || excludesDisk(p, v, d)
			}
		}
		if !hit {
			out = append(out, p)
		}
	}
	return out
}

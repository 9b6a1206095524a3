package bootcheck

import "os"

// kvmUsable reports whether /dev/kvm can be opened for writing. A host may
// offer one that still cannot run every guest (Run falls back to TCG).
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

package guestfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// probeKind looks at the first bytes of a partition and names what it
// holds, with a note for the README when it cannot be browsed.
func probeKind(r io.ReaderAt, size int64) (kind, note string) {
	buf := make([]byte, 128<<10)
	n, _ := r.ReadAt(buf, 0)
	buf = buf[:n]
	at := func(off int, magic string) bool {
		return off+len(magic) <= len(buf) && string(buf[off:off+len(magic)]) == magic
	}
	switch {
	case n == 0:
		return KindUnknown, "The partition could not be read (it is empty or lies past the end of the disk)."
	case at(0, "XFSB"):
		return KindXFS, ""
	case len(buf) >= 1024+58 && binary.LittleEndian.Uint16(buf[1024+56:]) == 0xEF53:
		return KindExt, ""
	case at(3, "NTFS    "):
		return KindNTFS, ""
	case isLVMLabel(buf):
		return KindLVM, "This partition is an LVM physical volume."
	case isFATBoot(buf):
		return KindFAT, ""
	case at(4096-10, "SWAPSPACE2") || at(4096-10, "SWAP-SPACE"):
		return KindSwap, "This partition is Linux swap space: it holds no files."
	case at(0, "LUKS\xba\xbe"):
		return KindOther, "This partition is LUKS-encrypted: its files cannot be read without the key."
	case at(3, "-FVE-FS-"):
		return KindOther, "This partition is BitLocker-encrypted: its files cannot be read without the key."
	case at(0x10040, "_BHRfS_M"):
		return KindOther, "This partition holds a btrfs filesystem, which this version cannot browse."
	case at(3, "ReFS"):
		return KindOther, "This partition holds a ReFS filesystem, which this version cannot browse."
	case at(0x8001, "CD001"):
		return KindOther, "This partition holds an ISO 9660 filesystem, which this version cannot browse."
	case at(0, "hsqs"):
		return KindOther, "This partition holds a squashfs filesystem, which this version cannot browse."
	case len(buf) >= 1024 && isZero(buf[:1024]) && isZero(buf):
		return KindEmpty, "The first 128 KiB of this partition are zeros: no filesystem was found (unformatted, or a boot area such as a BIOS boot partition)."
	}
	return KindUnknown, fmt.Sprintf("No known filesystem signature was found. First bytes:\n%s", hexDump(buf[:min(len(buf), 64)]))
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func hexDump(b []byte) string {
	var s bytes.Buffer
	for i := 0; i < len(b); i += 16 {
		e := min(i+16, len(b))
		fmt.Fprintf(&s, "%08x  % x\n", i, b[i:e])
	}
	return s.String()
}

package bootcheck

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
)

// DefaultExpect matches a login prompt at the end of a console line: what
// getty, agetty and most appliances print once the guest is up.
var DefaultExpect = regexp.MustCompile(`(?im)login:[ \t]*$`)

// bootFailures are console lines that end a boot check at once: the boot
// loader found no kernel, the kernel panicked, the firmware or the disk's
// boot code found nothing to start. They are matched on complete lines
// (the message's tail may still be on its way), bootPrompts anywhere.
var (
	bootFailures = regexp.MustCompile(strings.Join([]string{
		`Kernel panic - not syncing`,
		`Loading \S+\.\.\. failed`, // SYSLINUX
		`Could not find kernel image`,
		`No bootable device`,
		`error: (no such partition|unknown filesystem|file .* not found)`, // GRUB
		`Missing operating system`,
		`Operating system not found`,
		`BOOTMGR is missing`,
		`BdsDxe: failed to load .*Access Denied`, // OVMF: Secure Boot refused the loader
	}, "|"))
	bootPrompts = regexp.MustCompile(`grub rescue>`)
)

// consoleLimit is how much console text a check keeps (the last bytes).
const consoleLimit = 256 << 10

// console collects the guest's serial output as plain text: carriage
// returns, terminal escape sequences and other control bytes removed.
type console struct {
	mu      sync.Mutex
	text    []byte
	dropped int64  // bytes of text dropped from the front (consoleLimit)
	esc     []byte // the start of an escape sequence cut by a read
}

// ansiEscape is a terminal escape sequence: CSI (ESC [ parameters,
// intermediates, final) or any other ESC sequence (intermediates, final);
// escapePrefix is the start of one, not yet complete.
var (
	ansiEscape   = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|[ -/]*[0-~])`)
	escapePrefix = regexp.MustCompile(`^\x1b(\[[0-?]*[ -/]*|[ -/]*)$`)
)

// write adds raw serial bytes.
func (c *console) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	raw := append(c.esc, p...)
	c.esc = nil
	// Hold back only what may still become an escape sequence.
	if i := bytes.LastIndexByte(raw, 0x1b); i >= 0 && escapePrefix.Match(raw[i:]) && len(raw)-i < 32 {
		c.esc = append([]byte(nil), raw[i:]...)
		raw = raw[:i]
	}
	raw = ansiEscape.ReplaceAll(raw, nil)
	for _, b := range raw {
		if b == '\n' || b == '\t' || b >= 0x20 && b != 0x7f {
			c.text = append(c.text, b)
		}
	}
	if n := len(c.text); n > consoleLimit {
		c.dropped += int64(n - consoleLimit)
		c.text = append(c.text[:0], c.text[n-consoleLimit:]...)
	}
}

// String is the text collected so far.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text)
}

// since is the text from absolute offset from on (or from the oldest text
// kept), and the absolute offset where it starts.
func (c *console) since(from int64) (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := max(from-c.dropped, 0)
	if i > int64(len(c.text)) {
		i = int64(len(c.text))
	}
	return string(c.text[i:]), c.dropped + i
}

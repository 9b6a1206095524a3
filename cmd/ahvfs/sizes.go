package main

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// Sizes and rates on the command line (docs/cli.md): a number of bytes
// (1048576) or a number with a unit, with or without a space (1MiB, 1 MiB,
// 1.5GiB, 10MB). IEC units (KiB, MiB, GiB, TiB, PiB, EiB) are powers of
// 1024, SI units (kB, MB, GB, TB, PB, EB) powers of 1000; units are not
// case-sensitive. A bare K, M, G... is refused as ambiguous. A fraction is
// rounded down to a whole byte (so sizes printed as "1.2 GiB" are read
// back). Negative sizes and sizes beyond 2^63-1 bytes are refused. A rate
// is a size per second, with or without "/s"; 0 means unlimited.

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50, "eib": 1 << 60,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15, "eb": 1e18,
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)$`)

const sizeHelp = "want bytes or a number with a unit, like 1048576, 1MiB, 1.5GiB or 10MB"

// parseSize parses a size flag's value into bytes. Errors are usage errors.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, usagef("size is empty: %s", sizeHelp)
	}
	if strings.HasPrefix(t, "-") {
		return 0, usagef("size %q is negative", s)
	}
	m := sizeRE.FindStringSubmatch(t)
	if m == nil {
		return 0, usagef("size %q: %s", s, sizeHelp)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		if len(m[2]) == 1 && strings.ContainsRune("kmgtpe", rune(strings.ToLower(m[2])[0])) {
			u := strings.ToUpper(m[2])
			return 0, usagef("size %q: unit %q is ambiguous: write %siB (powers of 1024) or %sB (powers of 1000)", s, m[2], u, u)
		}
		return 0, usagef("size %q: unknown unit %q: %s", s, m[2], sizeHelp)
	}
	num, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, usagef("size %q: %s", s, sizeHelp)
	}
	num.Mul(num, new(big.Rat).SetInt64(unit))
	n := new(big.Int).Quo(num.Num(), num.Denom()) // rounds toward zero: down
	if !n.IsInt64() {
		return 0, usagef("size %q is too large (at most %d bytes, 8EiB)", s, int64(math.MaxInt64))
	}
	return n.Int64(), nil
}

// parseRate parses a rate flag's value (100MiB/s, 100MiB, 0) into bytes per
// second; 0 means unlimited.
func parseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(t, "/s"), "/S"))
	n, err := parseSize(t)
	if err != nil {
		return 0, usagef("rate %q: %v (a rate is a size per second, with or without /s; 0 is unlimited)", s, err)
	}
	return n, nil
}

// formatSize prints n exactly, in the largest IEC unit that divides it
// (1MiB, 32MiB, 1000): the form defaults are shown in.
func formatSize(n int64) string {
	units := []string{"EiB", "PiB", "TiB", "GiB", "MiB", "KiB"}
	for i, u := range units {
		size := int64(1) << (10 * (len(units) - i))
		if n != 0 && n%size == 0 {
			return fmt.Sprintf("%d%s", n/size, u)
		}
	}
	return fmt.Sprint(n)
}

// sizeValue is the cli.Generic behind a sizeFlag.
type sizeValue struct {
	n     int64
	rate  bool
	shown bool // has a default or was set: String shows it
}

func (v *sizeValue) Set(s string) error {
	parse := parseSize
	if v.rate {
		parse = parseRate
	}
	n, err := parse(s)
	if err != nil {
		return err
	}
	v.n, v.shown = n, true
	return nil
}

func (v *sizeValue) String() string {
	switch {
	case v == nil || !v.shown:
		return ""
	case v.rate && v.n == 0:
		return "0 (unlimited)"
	case v.rate:
		return formatSize(v.n) + "/s"
	}
	return formatSize(v.n)
}

// sizeFlag is the flag type of every size and rate flag: its value is
// parsed by parseSize (or parseRate), a bad value is a usage error (exit
// 2), and the help shows the placeholder in the usage's backquotes
// (`SIZE`, `RATE`). Read it with flagSize. A test walks every command and
// checks each sizeFlag, so a new one is covered without a new test.
type sizeFlag struct{ cli.GenericFlag }

// newSizeFlag makes a size flag; def is its default ("" for none) and
// usage names the placeholder, e.g. "fixed chunk `SIZE`".
func newSizeFlag(name, def, usage string) *sizeFlag { return makeSizeFlag(name, def, usage, false) }

// newRateFlag makes a rate flag (bytes per second, 0 unlimited), e.g.
// newRateFlag("bwlimit", "0", "at most `RATE` (100MiB/s)").
func newRateFlag(name, def, usage string) *sizeFlag { return makeSizeFlag(name, def, usage, true) }

func makeSizeFlag(name, def, usage string, rate bool) *sizeFlag {
	v := &sizeValue{rate: rate}
	if def != "" {
		if err := v.Set(def); err != nil {
			panic(fmt.Sprintf("flag --%s: default %q: %v", name, def, err))
		}
	}
	return &sizeFlag{cli.GenericFlag{Name: name, Usage: usage, Value: v}}
}

// required marks the flag as one the command needs.
func (f *sizeFlag) required() *sizeFlag { f.Required = true; return f }

// flagSize returns a size or rate flag's value in bytes (bytes per second),
// its default when not given, 0 when it has neither.
func flagSize(c *cli.Context, name string) int64 {
	if v, ok := c.Generic(name).(*sizeValue); ok {
		return v.n
	}
	return 0
}

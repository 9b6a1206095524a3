package main

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// sizeUnits are the accepted units, case-insensitive. All are binary
// multiples, so 1MB is 1MiB, as a block size wants.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
	"M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
	"G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
	"T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
}

// sizeSyntax is a decimal number, then an optional unit.
var sizeSyntax = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// parseSize reads a size: a whole number of bytes ("1048576") or a number
// with a unit ("1MiB", "64 KiB", "1.5GiB"); the result must be a whole
// number of bytes that fits in an int64.
func parseSize(s string) (int64, error) {
	const want = "want bytes (1048576) or a number with a unit (1MiB, 64KiB, 1.5GiB)"
	m := sizeSyntax.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("size %q: %s", s, want)
	}
	mult, ok := sizeUnits[strings.ToUpper(m[2])]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (B, KiB, MiB, GiB, TiB)", s, m[2])
	}
	n, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("size %q: %s", s, want)
	}
	n.Mul(n, new(big.Rat).SetInt64(mult))
	if !n.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if n.Num().Cmp(big.NewInt(math.MaxInt64)) > 0 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n.Num().Int64(), nil
}

package main

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string // part of the error; "" for success
	}{
		{"1048576", 1 << 20, ""},
		{"1MiB", 1 << 20, ""},
		{"1mib", 1 << 20, ""},
		{"1 MiB", 1 << 20, ""},
		{" 64KiB ", 64 << 10, ""},
		{"512MB", 512 << 20, ""},
		{"2G", 2 << 30, ""},
		{"1GiB", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"1TiB", 1 << 40, ""},
		{"4096B", 4096, ""},
		{"0", 0, ""},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"", 0, "want bytes (1048576) or a number with a unit (1MiB"},
		{"lots", 0, "want bytes"},
		{"MiB", 0, "want bytes"},
		{"-1", 0, "want bytes"},
		{"-1MiB", 0, "want bytes"},
		{"0x10", 0, "want bytes"},
		{"1e6", 0, "want bytes"},
		{"1,5MiB", 0, "want bytes"},
		{"1.MiB", 0, "want bytes"},
		{"1 2MiB", 0, "want bytes"},
		{"1PiB", 0, "unknown unit \"PiB\""},
		{"10 bytes", 0, "unknown unit \"bytes\""},
		{"0.5B", 0, "is not a whole number of bytes"},
		{"1.0000001KiB", 0, "is not a whole number of bytes"},
		{"9223372036854775808", 0, "too large"},
		{"8388608TiB", 0, "too large"},
	} {
		got, err := parseSize(tc.in)
		switch {
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseSize(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.wantErr)
		case err != nil && !strings.Contains(err.Error(), `"`+tc.in+`"`):
			t.Errorf("parseSize(%q): error %q does not quote the input", tc.in, err)
		}
	}
}

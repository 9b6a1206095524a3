package rofile_test

import (
	"errors"
	"io"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/ahvfs/ahvfs/internal/rofile"
)

func entries(t *testing.T, names ...string) []fs.DirEntry {
	m := fstest.MapFS{}
	for _, n := range names {
		m[n] = &fstest.MapFile{}
	}
	l, err := m.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDir(t *testing.T) {
	five := entries(t, "a", "b", "c", "d", "e")
	for _, c := range []struct {
		name  string
		pages []int // n of each call
		want  []int // entries returned by each call
		eof   int   // index of the call that returns io.EOF (-1: none)
	}{
		{"pages of 2", []int{2, 2, 2, 2}, []int{2, 2, 1, 0}, 3},
		{"all at once", []int{0, 0}, []int{5, 0}, -1},
		{"page then rest", []int{3, -1, 1}, []int{3, 2, 0}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var d rofile.Dir
			calls := 0
			list := func() ([]fs.DirEntry, error) { calls++; return five, nil }
			for i, n := range c.pages {
				got, err := d.ReadDir(n, list)
				if len(got) != c.want[i] || (i == c.eof) != (err == io.EOF) || (err != nil && err != io.EOF) {
					t.Errorf("call %d ReadDir(%d) = %d entries, %v", i, n, len(got), err)
				}
			}
			if calls != 1 {
				t.Errorf("listed %d times", calls)
			}
		})
	}
	var d rofile.Dir
	boom := errors.New("boom")
	for range 2 {
		if _, err := d.ReadDir(1, func() ([]fs.DirEntry, error) { return nil, boom }); err != boom {
			t.Errorf("ReadDir = %v, want the listing's error", err)
		}
	}
}

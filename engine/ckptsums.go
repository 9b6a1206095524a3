package engine

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A published checkpoint carries the size of every file and the CRC-32C of
// those Pebble reads as logs — MANIFEST-*, *.log, OPTIONS-* and markers —
// in checkpointSums. Pebble checksums its tables block by block, but takes
// damage at the end of a log for a torn write and stops reading there
// without an error: a flipped bit in a checkpoint's MANIFEST would lose a
// table, and the restore points in it, silently. Readers check the sums
// before opening the checkpoint (the summed files are small).
const checkpointSums = "AHVFS-SUMS.json"

type ckptFile struct {
	Size int64   `json:"size"`
	CRC  *uint32 `json:"crc32c,omitempty"`
}

// summed reports whether a checkpoint file's content is summed, not only
// its size.
func summed(name string) bool {
	return !strings.HasSuffix(name, ".sst")
}

// writeCheckpointSums records the files of the checkpoint in dir.
func writeCheckpointSums(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	sums := map[string]ckptFile{}
	for _, e := range entries {
		if e.IsDir() || e.Name() == checkpointSums {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !summed(e.Name()) {
			st, err := os.Stat(p)
			if err != nil {
				return err
			}
			sums[e.Name()] = ckptFile{Size: st.Size()}
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		c := crc32.Checksum(b, crcTable)
		sums[e.Name()] = ckptFile{Size: int64(len(b)), CRC: &c}
	}
	b, _ := json.Marshal(sums)
	return writeSynced(filepath.Join(dir, checkpointSums), b)
}

// checkCheckpointSums checks the checkpoint in dir against its sums; one
// published before sums existed passes. Damage is an *IndexDamageError.
func checkCheckpointSums(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, checkpointSums))
	if os.IsNotExist(err) {
		return nil
	}
	damaged := func(path, detail string) error {
		return &IndexDamageError{Path: path, Detail: detail}
	}
	if err != nil {
		return fmt.Errorf("open checkpoint %s: %w", dir, err)
	}
	var sums map[string]ckptFile
	if err := json.Unmarshal(b, &sums); err != nil {
		return damaged(filepath.Join(dir, checkpointSums), "undecodable")
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range sums {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		want := sums[n]
		p := filepath.Join(dir, n)
		if want.CRC == nil {
			st, err := os.Stat(p)
			if err != nil {
				return damaged(p, err.Error())
			}
			if st.Size() != want.Size {
				return damaged(p, fmt.Sprintf("%d bytes, published with %d", st.Size(), want.Size))
			}
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return damaged(p, err.Error())
		}
		if int64(len(data)) != want.Size || crc32.Checksum(data, crcTable) != *want.CRC {
			return damaged(p, "its checksum does not match the one it was published with")
		}
	}
	return nil
}

// writeSynced writes data to a new file at path and fsyncs it (the caller
// renames or fsyncs its directory).
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

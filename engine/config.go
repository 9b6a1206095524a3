package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// FormatVersion is the newest repository format this code reads and writes.
// Open refuses a repository whose config names a newer one.
const FormatVersion = 2

// Compression codecs.
const (
	CompressZstd = "zstd"
	CompressS2   = "s2"
	CompressNone = "none"
)

// DefaultCompression is chosen by measurement on real disk images (see
// docs/PERFORMANCE.md): S2 compresses about 3x faster than zstd's fastest
// level at a ratio within a few percent of it, and the ingest target is
// bound by compression speed on two cores.
const DefaultCompression = CompressS2

// InitOptions are the format parameters chosen at init. Zero means default.
type InitOptions struct {
	// ChunkSize is the fixed chunk size in bytes: a power of two from 64 KiB
	// to 8 MiB (default 1 MiB).
	ChunkSize int
	// PageEntries is the number of chunk IDs in a manifest page (default 1024).
	PageEntries int
	// PackSize is the size at which a pack is sealed (default 32 MiB).
	PackSize int64
	// ParityData and ParityShards are Reed-Solomon's k and m (default 10+2).
	ParityData, ParityShards int
	// ShardSize is the size of one Reed-Solomon shard (default 256 KiB).
	ShardSize int
	// Compression is zstd, s2 or none (default DefaultCompression).
	Compression string
	// Password, when not empty, encrypts the repository.
	Password []byte
	// KDF tunes argon2id (zero: the defaults in KDFParams).
	KDF KDFParams
	// Backend receives config.json (default nil: a backend.Local of the
	// repository directory); see OpenOptions.Backend.
	Backend backend.Backend
	// Remote: Backend is shared (see OpenOptions.Remote); dir is the base
	// of this host's caches, and the index goes to its subdirectory named
	// by the new repository's ID.
	Remote bool
	// CopyFrom, when set, makes a repository that stores blobs as CopyFrom
	// does (a DR copy that sync fills without re-encoding): its format
	// parameters override those above, and when it is encrypted its master
	// key is wrapped anew with Password (which must be given).
	CopyFrom *Repository
}

// maxChunkSize is the largest chunk size a repository may have.
const maxChunkSize = 8 << 20

// Validate reports every problem with the options at once.
func (o *InitOptions) Validate() error {
	var errs []error
	if o.ChunkSize < 64<<10 || o.ChunkSize > maxChunkSize || o.ChunkSize&(o.ChunkSize-1) != 0 {
		errs = append(errs, fmt.Errorf("chunk size %d: want a power of two from 64 KiB to 8 MiB", o.ChunkSize))
	}
	if o.PageEntries < 16 || o.PageEntries > 1<<16 {
		errs = append(errs, fmt.Errorf("page entries %d: want 16 to 65536", o.PageEntries))
	}
	if o.PackSize < int64(o.ChunkSize) || o.PackSize > 1<<30 {
		errs = append(errs, fmt.Errorf("pack size %d: want from the chunk size to 1 GiB", o.PackSize))
	}
	if o.ParityData < 1 || o.ParityShards < 0 || o.ParityData+o.ParityShards > 256 {
		errs = append(errs, fmt.Errorf("parity %d+%d: want k >= 1, m >= 0, k+m <= 256", o.ParityData, o.ParityShards))
	}
	if o.ShardSize < 4<<10 || o.ShardSize > 16<<20 || o.ShardSize%64 != 0 {
		errs = append(errs, fmt.Errorf("shard size %d: want 4 KiB to 16 MiB, a multiple of 64", o.ShardSize))
	}
	switch o.Compression {
	case CompressZstd, CompressS2, CompressNone:
	default:
		errs = append(errs, fmt.Errorf("compression %q: want zstd, s2 or none", o.Compression))
	}
	return errors.Join(errs...)
}

func (o *InitOptions) setDefaults() {
	if o.ChunkSize == 0 {
		o.ChunkSize = 1 << 20
	}
	if o.PageEntries == 0 {
		o.PageEntries = 1024
	}
	if o.PackSize == 0 {
		o.PackSize = 32 << 20
	}
	if o.ParityData == 0 && o.ParityShards == 0 {
		o.ParityData, o.ParityShards = 10, 2
	}
	if o.ShardSize == 0 {
		o.ShardSize = 256 << 10
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
}

// ParseParity parses "k+m" (e.g. "10+2").
func ParseParity(s string) (k, m int, err error) {
	if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d+%d", &k, &m); err != nil {
		return 0, 0, fmt.Errorf("parity %q: want DATA+PARITY, e.g. 10+2", s)
	}
	return k, m, nil
}

// Config is the repository's config.json: its format parameters. It is
// written once by init and never changes.
type Config struct {
	Format      int       `json:"format"`
	ID          string    `json:"id"`
	Created     time.Time `json:"created"`
	ChunkSize   int       `json:"chunk_size"`
	PageEntries int       `json:"page_entries"`
	PackSize    int64     `json:"pack_size"`
	Parity      struct {
		Data      int `json:"data"`
		Parity    int `json:"parity"`
		ShardSize int `json:"shard_size"`
	} `json:"parity"`
	Compression string      `json:"compression"`
	Hash        string      `json:"hash"`
	Encryption  *Encryption `json:"encryption,omitempty"`
}

const configName = "config.json"

// loadConfig reads config.json from be; a missing one is ErrNotRepository.
func loadConfig(ctx context.Context, be backend.Backend, dir string) (*Config, error) {
	b, err := backend.Get(ctx, be, configName)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: %w (no %s; create one with 'ahvfs init')", dir, ErrNotRepository, configName)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	return decodeConfig(b)
}

// encodeConfig is the content of config.json.
func encodeConfig(c *Config) []byte {
	b, _ := json.MarshalIndent(c, "", "  ")
	return append(b, '\n')
}

// decodeConfig parses and checks config.json.
func decodeConfig(b []byte) (*Config, error) {
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("read %s: %w: %v", configName, ErrCorrupt, err)
	}
	if probe.Format > FormatVersion {
		return nil, fmt.Errorf("%w: repository format %d, this ahvfs reads up to %d; upgrade ahvfs", ErrNewerFormat, probe.Format, FormatVersion)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read %s: %w: %v", configName, ErrCorrupt, err)
	}
	o := InitOptions{ChunkSize: c.ChunkSize, PageEntries: c.PageEntries, PackSize: c.PackSize,
		ParityData: c.Parity.Data, ParityShards: c.Parity.Parity, ShardSize: c.Parity.ShardSize, Compression: c.Compression}
	if c.Format < 1 || c.Hash != "blake3" {
		return nil, fmt.Errorf("read %s: %w: format %d, hash %q", configName, ErrCorrupt, c.Format, c.Hash)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w: %v", configName, ErrCorrupt, err)
	}
	return &c, nil
}

func newRepoID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// ReadConfig reads and checks the config.json of the repository in be.
func ReadConfig(ctx context.Context, be backend.Backend) (*Config, error) {
	return loadConfig(ctx, be, be.String())
}

package dr

import (
	"context"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// Info describes one side of a sync.
type Info struct {
	RepoID      string `json:"repo_id"`
	TransferKey string `json:"transfer_key"`
	Location    string `json:"location"`
	// AppendOnly: the repository accepts new restore points and locks but
	// refuses to remove anything (ahvfs serve --append-only).
	AppendOnly bool `json:"append_only,omitempty"`
	// ChunkSize is the repository's chunk size: a re-encoding sync writes
	// whole chunks of it.
	ChunkSize int `json:"chunk_size,omitempty"`
}

// Point is a restore point as the sides exchange it: the engine's record
// and the end of its retention lock (which the record does not carry).
type Point struct {
	*engine.RestorePoint
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// Source is the side restore points are read from.
type Source interface {
	Info(ctx context.Context) (Info, error)
	// Points lists every restore point.
	Points(ctx context.Context) ([]Point, error)
	// PageIDs returns the chunk IDs each manifest page lists.
	PageIDs(ctx context.Context, pages []engine.ID) ([][]engine.ID, error)
	// ReadBlobs reads the blobs, as stored, and calls fn with each, in any
	// order and possibly from several goroutines; fn owns the blob.
	ReadBlobs(ctx context.Context, ids []engine.ID, fn func(*engine.StoredBlob) error) error
	Close() error
}

// Target is the side restore points are written to.
type Target interface {
	Info(ctx context.Context) (Info, error)
	Points(ctx context.Context) ([]Point, error)
	// Have reports which blobs the target holds durably; with check, a
	// damaged one counts as missing.
	Have(ctx context.Context, ids []engine.ID, check bool) ([]bool, error)
	// StoreBlobs checks and stores every blob received from in until it
	// closes; replace stores again blobs the target holds damaged. It
	// returns how many it stored.
	StoreBlobs(ctx context.Context, replace bool, in <-chan *engine.StoredBlob) (int, error)
	// Flush makes every blob stored so far durable.
	Flush(ctx context.Context) error
	// Adopt commits a restore point whose pages and chunks the target
	// holds (*engine.MissingBlobsError names those it lacks).
	Adopt(ctx context.Context, p Point) error
	// Lock extends the retention lock of the target's restore point name.
	Lock(ctx context.Context, name string, until time.Time) error
	Close() error
}

// PackSource is a Source that can hand over whole pack files; a sync
// between a PackSource and a PackTarget moves a pack whose every blob the
// target lacks as it is, and the rest blob by blob.
type PackSource interface {
	// WholePacks groups ids by the pack that holds them: the packs every
	// blob of which is among ids, with their IDs, and the other ids.
	WholePacks(ctx context.Context, ids []engine.ID) (map[engine.PackID][]engine.ID, []engine.ID, error)
	// ReadPack reads a pack file as stored, into buf's storage when it is
	// large enough.
	ReadPack(ctx context.Context, id engine.PackID, buf []byte) ([]byte, error)
}

// packPrefetcher is a PackSource that can start reading a pack it will be
// asked for soon (a local repository: the kernel reads it ahead).
type packPrefetcher interface {
	PrefetchPack(ctx context.Context, id engine.PackID)
}

// PackTarget is a Target that adopts whole pack files.
type PackTarget interface {
	// AdoptPack checks and stores a pack file (engine.ErrCorrupt when it
	// is damaged: nothing is stored) and returns how many of its blobs the
	// target did not hold before.
	AdoptPack(ctx context.Context, id engine.PackID, data []byte) (int, error)
}

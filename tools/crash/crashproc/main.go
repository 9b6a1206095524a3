package crashproc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Main runs a crash tool: fn gets a context that SIGINT and SIGTERM end,
// and an error from it exits 1 with the tool's name in front.
func Main(name string, fn func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := fn(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// BuildAhvfs builds ./cmd/ahvfs into dir and returns the binary's path.
func BuildAhvfs(dir string) (string, error) {
	bin := filepath.Join(dir, "ahvfs")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/ahvfs/ahvfs/cmd/ahvfs").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ahvfs: %v: %s", err, b)
	}
	return bin, nil
}

// Common are the options every crash tool has.
type Common struct {
	Seed    uint64 // 0: from the clock
	Ahvfs   string // default: built into the work directory
	Dir     string // default: a new temporary directory, removed when every check passed
	Verbose bool
}

// Flags registers -seed, -ahvfs, -dir and -v.
func (c *Common) Flags() {
	flag.Uint64Var(&c.Seed, "seed", 0, "seed of the images and of the choices (default: from the clock)")
	flag.StringVar(&c.Ahvfs, "ahvfs", "", "ahvfs binary (default: built from ./cmd/ahvfs)")
	flag.StringVar(&c.Dir, "dir", "", "work directory (default: a new temporary one)")
	flag.BoolVar(&c.Verbose, "v", false, "print every trial")
}

// Setup draws the seed when none is set and makes the work directory.
func (c *Common) Setup(name string) (work string, err error) {
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Dir != "" {
		return c.Dir, nil
	}
	return os.MkdirTemp("", name+"-")
}

// Build builds ahvfs into work unless c.Ahvfs names a binary.
func (c *Common) Build(work string) error {
	if c.Ahvfs != "" {
		return nil
	}
	var err error
	c.Ahvfs, err = BuildAhvfs(work)
	return err
}

// End adds the failed checks to err; then it keeps the work directory for
// a post-mortem, or removes it when it was a temporary one.
func (c *Common) End(out io.Writer, name, work string, failures []string, err error) error {
	if len(failures) > 0 {
		err = errors.Join(err, fmt.Errorf("%d checks failed (first: %s)", len(failures), failures[0]))
	}
	if err != nil {
		fmt.Fprintf(out, "%s: kept %s\n", name, work)
	} else if c.Dir == "" {
		os.RemoveAll(work)
	}
	return err
}

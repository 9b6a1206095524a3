package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ahvfs/ahvfs/engine/backend"
)

// Lock objects of a repository that several hosts share (docs/FORMAT.md,
// "Shared repositories"). The flock on the local directory orders the
// processes of one host; between hosts, every process that opens a shared
// repository stores an object locks/shared-<random> for as long as it is
// open, and gc stores locks/exclusive-<random>. Each stores its own object
// first and lists the others' second, so of two processes racing, at
// least one sees the other (object stores list what they stored, strongly
// consistently): a writer that sees a live exclusive lock, or a gc that
// sees any other live lock, removes its own and waits or fails. No
// conditional write is needed, so any S3-compatible store serves.
//
// A holder rewrites its object every lockRefresh. A lock is stale when its
// object is older than lockStale by the store's clock (the age of a lock
// is measured against an object this process has just stored, so clocks of
// hosts never meet), or at once when it names this host and a process that
// is no longer running. Stale locks are ignored, and `ahvfs unlock` removes
// them. A holder that could not refresh its lock for lockStale minus two
// refreshes stops before it publishes anything.
const prefixRepoLocks = "locks/"

var (
	lockRefresh = 5 * time.Minute
	lockStale   = 30 * time.Minute
)

// repoLockInfo is the body of a lock object.
type repoLockInfo struct {
	V         int       `json:"v"`
	Kind      string    `json:"kind"` // "shared" or "exclusive"
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	User      string    `json:"user,omitempty"`
	Cmd       string    `json:"cmd,omitempty"`
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
}

// repoLock is a lock object this process holds.
type repoLock struct {
	be   backend.Backend
	name string
	info repoLockInfo
	log  interface{ Warn(string, ...any) }

	mu     sync.Mutex
	lastOK time.Time // local time of the last successful store
	lost   error     // set when the object was found removed
	stop   chan struct{}
	done   chan struct{}
}

// LockHolder describes a lock object, for errors and `ahvfs unlock`.
type LockHolder struct {
	Name    string        `json:"name"`
	Kind    string        `json:"kind"`
	Host    string        `json:"host"`
	PID     int           `json:"pid"`
	User    string        `json:"user,omitempty"`
	Cmd     string        `json:"cmd,omitempty"`
	Created time.Time     `json:"created"`
	Age     time.Duration `json:"age_ns"` // since it was last stored, by the store's clock
	Stale   bool          `json:"stale"`
	Why     string        `json:"why,omitempty"` // why it is stale
}

func (h LockHolder) String() string {
	s := fmt.Sprintf("%s lock of pid %d on %s", h.Kind, h.PID, h.Host)
	if h.Cmd != "" {
		s += " (" + h.Cmd + ")"
	}
	s += fmt.Sprintf(", stored %s ago", h.Age.Round(time.Second))
	if h.Stale {
		s += ", stale: " + h.Why
	}
	return s
}

// acquireRepoLock stores a lock object of kind and waits, up to wait, for
// the locks it conflicts with to go. cmd names the command for the other
// hosts (empty for an encrypted repository, whose arguments may name VMs).
func acquireRepoLock(ctx context.Context, be backend.Backend, exclusive bool, wait time.Duration, cmd string, log interface{ Warn(string, ...any) }) (*repoLock, error) {
	host, _ := os.Hostname()
	u := ""
	if cu, err := user.Current(); err == nil {
		u = cu.Username
	}
	kind := "shared"
	if exclusive {
		kind = "exclusive"
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	now := time.Now().UTC().Truncate(time.Second)
	l := &repoLock{be: be, name: prefixRepoLocks + kind + "-" + hex.EncodeToString(rnd[:]), log: log,
		info: repoLockInfo{V: 1, Kind: kind, Host: host, PID: os.Getpid(), User: u, Cmd: cmd, Created: now, Refreshed: now}}
	deadline := time.Now().Add(wait)
	backoff := 500 * time.Millisecond
	for {
		if err := l.store(ctx); err != nil {
			return nil, fmt.Errorf("store lock object: %w", err)
		}
		conflicts, err := l.conflicts(ctx)
		if err != nil {
			l.remove()
			return nil, err
		}
		if len(conflicts) == 0 {
			break
		}
		l.remove()
		if time.Now().After(deadline) {
			return nil, lockedError(exclusive, conflicts)
		}
		sleep := backoff/2 + mrand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.refresher()
	return l, nil
}

// lockedError says who holds the locks in the way and what to do.
func lockedError(exclusive bool, conflicts []LockHolder) error {
	var who []string
	for _, c := range conflicts {
		who = append(who, c.String())
	}
	what := "gc is running"
	if exclusive {
		what = fmt.Sprintf("%d other process(es) have it open", len(conflicts))
	}
	return fmt.Errorf("%w: %s (%s); wait for it to finish (--lock-wait), or if that host is dead, 'ahvfs unlock' removes its stale lock", ErrLocked, what, strings.Join(who, "; "))
}

// store writes (or rewrites) the lock object.
func (l *repoLock) store(ctx context.Context) error {
	l.mu.Lock()
	l.info.Refreshed = time.Now().UTC().Truncate(time.Second)
	body, _ := json.Marshal(l.info)
	l.mu.Unlock()
	if err := backend.PutBytes(ctx, l.be, l.name, body); err != nil {
		return err
	}
	l.mu.Lock()
	l.lastOK = time.Now()
	l.mu.Unlock()
	return nil
}

// conflicts lists the live locks that stop this one.
func (l *repoLock) conflicts(ctx context.Context) ([]LockHolder, error) {
	all, err := readRepoLocks(ctx, l.be, l.name)
	if err != nil {
		return nil, err
	}
	var out []LockHolder
	for _, h := range all {
		if h.Name == l.name || h.Stale {
			continue
		}
		if l.info.Kind == "exclusive" || h.Kind == "exclusive" {
			out = append(out, h)
		}
	}
	return out, nil
}

// readRepoLocks reads every lock object and judges it against ref, the
// name of an object just stored (its time is the store's "now").
func readRepoLocks(ctx context.Context, be backend.Backend, ref string) ([]LockHolder, error) {
	refInfo, err := be.Stat(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("lock objects: %w", err)
	}
	now := refInfo.ModTime
	host, _ := os.Hostname()
	infos, err := backend.ListAll(ctx, be, prefixRepoLocks)
	if err != nil {
		return nil, fmt.Errorf("list lock objects: %w", err)
	}
	var out []LockHolder
	for _, info := range infos {
		base := path.Base(info.Name)
		if !strings.HasPrefix(base, "shared-") && !strings.HasPrefix(base, "exclusive-") {
			continue // probes of readers of the lock list
		}
		h := LockHolder{Name: info.Name, Age: max(now.Sub(info.ModTime), 0)}
		body, err := backend.Get(ctx, be, info.Name)
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		var li repoLockInfo
		if err != nil {
			return nil, fmt.Errorf("read lock object: %w", err)
		}
		if json.Unmarshal(body, &li) != nil || li.Kind == "" {
			// Unreadable: judged by its name and age alone.
			li.Kind, _, _ = strings.Cut(base, "-")
			li.Host = "?"
		}
		h.Kind, h.Host, h.PID, h.User, h.Cmd, h.Created = li.Kind, li.Host, li.PID, li.User, li.Cmd, li.Created
		switch {
		case h.Age > lockStale:
			h.Stale, h.Why = true, fmt.Sprintf("not refreshed for %s (a lock is stale after %s)", h.Age.Round(time.Second), lockStale)
		case li.Host == host && li.PID > 0 && !processAlive(li.PID):
			h.Stale, h.Why = true, fmt.Sprintf("process %d is no longer running on this host", li.PID)
		}
		out = append(out, h)
	}
	return out, nil
}

// processAlive reports whether a process of that PID runs on this host.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// refresher rewrites the lock object every lockRefresh until release; it
// notes when the object was removed by someone else (ahvfs unlock).
func (l *repoLock) refresher() {
	defer close(l.done)
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), lockRefresh)
		_, err := l.be.Stat(ctx, l.name)
		if errors.Is(err, backend.ErrNotExist) {
			l.mu.Lock()
			l.lost = fmt.Errorf("%w: this process's lock object %s was removed (by 'ahvfs unlock' on another host?); stopping before anything is published", ErrLocked, l.name)
			l.mu.Unlock()
			cancel()
			l.log.Warn("lost the repository lock: " + l.name + " was removed")
			return
		}
		if err == nil {
			err = l.store(ctx)
		}
		cancel()
		if err != nil {
			l.log.Warn("refresh of the repository lock failed (retried at the next refresh)", "lock", l.name, "err", err)
		}
	}
}

// check fails when the lock may no longer be trusted: its object was
// removed, or it could not be refreshed for so long that another host may
// take it for stale.
func (l *repoLock) check() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if since := time.Since(l.lastOK); since > lockStale-2*lockRefresh {
		return fmt.Errorf("%w: the repository lock could not be refreshed for %s; stopping before anything is published", ErrLocked, since.Round(time.Second))
	}
	return nil
}

// release stops refreshing and removes the object.
func (l *repoLock) release() {
	if l == nil {
		return
	}
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	l.remove()
}

func (l *repoLock) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.be.Delete(ctx, l.name); err != nil {
		l.log.Warn("could not remove the repository lock object (it goes stale)", "lock", l.name, "err", err)
	}
}

// RepoLocks lists the lock objects of a shared repository, each judged
// stale or live by the store's clock.
func RepoLocks(ctx context.Context, be backend.Backend) ([]LockHolder, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	probe := prefixRepoLocks + "probe-" + hex.EncodeToString(rnd[:])
	if err := backend.PutBytes(ctx, be, probe, nil); err != nil {
		return nil, fmt.Errorf("lock objects: %w", err)
	}
	defer be.Delete(context.WithoutCancel(ctx), probe)
	locks, err := readRepoLocks(ctx, be, probe)
	slices.SortFunc(locks, func(a, b LockHolder) int { return strings.Compare(a.Name, b.Name) })
	return locks, err
}

// RemoveRepoLocks removes the stale lock objects, and the live ones too
// when all is set; it returns those it removed.
func RemoveRepoLocks(ctx context.Context, be backend.Backend, all bool) ([]LockHolder, error) {
	locks, err := RepoLocks(ctx, be)
	if err != nil {
		return nil, err
	}
	var out []LockHolder
	for _, h := range locks {
		if !h.Stale && !all {
			continue
		}
		if err := be.Delete(ctx, h.Name); err != nil {
			return out, fmt.Errorf("remove lock %s: %w", h.Name, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// LocalLockHolder reports whether a process holds the writer lock of the
// local repository in dir, and what its lock file says about it (pid,
// host, time, command).
func LocalLockHolder(dir string) (holder string, held bool) {
	path := filepath.Join(dir, lockName)
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		return "", false
	}
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b)), true
}

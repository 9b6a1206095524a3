package nfs_test

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"syscall"

	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/engine/enginetest"
	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/nfs"
	"github.com/ahvfs/ahvfs/rptree"
	"github.com/ahvfs/ahvfs/rptree/rptreetest"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	enginetest.Cleanup()
	os.Exit(code)
}

// fixture is a repository with one restore point of VM "web01" (a real
// ext4 image) and of "db/01", served over NFS on loopback.
type fixture struct {
	img    []byte
	tree   *rptree.Tree
	addr   string
	diskAt string // the tree path of web01's disk
	stop   func()
}

func newFixture(t *testing.T, o nfs.Options) *fixture {
	t.Helper()
	img := enginetest.Ext4Image(t, 24<<20, 1)
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dir := rptreetest.RepoWithVMs(t, []string{"web01", "db/01"}, img)
	tree, _ := rptreetest.OpenTree(t, dir, rptree.Options{})
	f := &fixture{img: want, tree: tree, diskAt: "web01/" + rptreetest.T0.Format(time.RFC3339) + "/disk-0.raw"}
	f.addr, f.stop = serve(t, tree, o)
	return f
}

// serve serves tree on a loopback port until the returned stop is called
// (or the test ends).
func serve(t *testing.T, tree *rptree.Tree, o nfs.Options) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nfs.Serve(ctx, tree, ln, o) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// mount mounts the export's root with the Go NFS client.
func mount(t *testing.T, addr string) (*nfsc.Target, error) {
	t.Helper()
	c, err := rpc.DialTCP("tcp", addr, false)
	if err != nil {
		return nil, err
	}
	m := &nfsc.Mount{Client: c} // no Addr: NFS on the same connection, no portmapper
	target, err := m.Mount("/", rpc.AuthNull)
	if err != nil {
		c.Close()
		return nil, err
	}
	t.Cleanup(func() { target.Close() })
	return target, nil
}

// TestGoClient: a Go NFSv3 client lists the tree and reads a disk
// byte-exact; changes are refused.
func TestGoClient(t *testing.T) {
	f := newFixture(t, nfs.Options{})
	target, err := mount(t, f.addr)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := target.ReadDirPlus("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Name() != "." && e.Name() != ".." {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // the client keeps entries in a map
	if want := []string{rptree.VMDirName("db/01"), "web01"}; fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("root lists %q, want %q", names, want)
	}
	fi, _, err := target.Lookup("/" + f.diskAt)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(f.img)) {
		t.Fatalf("disk is %d bytes, want %d", fi.Size(), len(f.img))
	}
	file, err := target.Open("/" + f.diskAt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(file)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.img) {
		t.Fatalf("disk read over NFS differs from the image (%d bytes read)", len(got))
	}
	// "latest" is a symbolic link (clients follow it themselves).
	if fi, _, err := target.Lookup("/web01/latest"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("web01/latest: %v, %v", fi, err)
	}
	// ACCESS grants reading and nothing else.
	for _, c := range []struct{ ask, want uint32 }{{0x01, 0x01}, {0x3f, 0x23}} {
		if got, err := target.Access("/"+f.diskAt, c.ask); err != nil || got != c.want {
			t.Fatalf("ACCESS %#x: %#x, %v; want %#x", c.ask, got, err, c.want)
		}
	}
	if _, err := target.Create("/web01/new", 0o644); err == nil {
		t.Fatal("create on the read-only export succeeded")
	}
	if err := target.Remove("/" + f.diskAt); err == nil {
		t.Fatal("remove on the read-only export succeeded")
	}
}

// TestHandlesSurviveRestart: a handle from one server is resolved by a
// new server (new process state, new tree) to the same file.
func TestHandlesSurviveRestart(t *testing.T) {
	f := newFixture(t, nfs.Options{})
	t1, err := mount(t, f.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, fh, err := t1.Lookup("/" + f.diskAt)
	if err != nil {
		t.Fatal(err)
	}
	f.stop()
	addr2, _ := serve(t, f.tree, nfs.Options{})
	t2, err := mount(t, addr2)
	if err != nil {
		t.Fatal(err)
	}
	attr, err := t2.GetAttr(fh)
	if err != nil {
		t.Fatalf("the first server's handle on the second: %v", err)
	}
	if attr.Size() != int64(len(f.img)) || attr.Fileid != rptree.Inode(f.diskAt) {
		t.Fatalf("resolved to size %d, id %d; want %d, %d", attr.Size(), attr.Fileid, len(f.img), rptree.Inode(f.diskAt))
	}
	// A handle that is not one of ours is stale, not a crash.
	bad := append([]byte{}, fh...)
	bad[len(bad)-1] ^= 1
	if _, err := t2.GetAttr(bad); err == nil {
		t.Fatal("a damaged handle resolved")
	}
}

// TestAllow: a client outside Options.Allow cannot mount: its connection
// is closed before any reply. (A raw connection, not the Go client: that
// client reconnects in a loop to a server that closes it, and can then
// close a reply channel twice and panic.)
func TestAllow(t *testing.T) {
	f := newFixture(t, nfs.Options{Allow: []netip.Prefix{netip.MustParsePrefix("10.9.8.0/24")}})
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// MOUNT NULL (program 100005, version 3, procedure 0), one record.
	call := []byte{0x80, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa5, 0, 0, 0, 3, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	conn.Write(call)
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := conn.Read(make([]byte, 64)); n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a loopback client got an answer (%d bytes, %v) from an export allowed to 10.9.8.0/24 only", n, err)
	}
	if _, err := nfs.ParseAllow([]string{"10.0.0.0/8", "192.168.1.7", "fd00::/8"}); err != nil {
		t.Fatal(err)
	}
	if _, err := nfs.ParseAllow([]string{"10.0.0.0/33", "host"}); err == nil || !strings.Contains(err.Error(), `"host"`) {
		t.Fatalf("bad --allow entries: %v", err)
	}
}

// TestLibnfs: libnfs's nfs-cat reads the disk byte-exact, and nfs-ls
// lists a restore point (ports given in the URL; no portmapper yet).
func TestLibnfs(t *testing.T) {
	testenv.Commands(t, "nfs-cat", "nfs-ls")
	f := newFixture(t, nfs.Options{})
	_, port, _ := net.SplitHostPort(f.addr)
	url := func(p string) string {
		return fmt.Sprintf("nfs://127.0.0.1/%s?version=3&nfsport=%s&mountport=%s&auto-traverse-mounts=0", p, port, port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nfs-cat", url(f.diskAt))
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("nfs-cat: %v: %s", err, stderr.String())
	}
	if !bytes.Equal(got, f.img) {
		t.Fatalf("nfs-cat read %d bytes that differ from the image", len(got))
	}
	out, err := exec.CommandContext(ctx, "nfs-ls", url("web01/"+rptreetest.T0.Format(time.RFC3339))).CombinedOutput()
	if err != nil {
		t.Fatalf("nfs-ls: %v: %s", err, out)
	}
	for _, want := range []string{"disk-0.raw", "vm.json", "disk-0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nfs-ls does not list %s:\n%s", want, out)
		}
	}
}

// listenPortmap binds TCP and UDP 127.0.0.1:111. While another test run
// on this machine holds them (this test, a few seconds), it waits, up to
// two minutes; a system rpcbind holds them for good and fails it.
func listenPortmap() (net.Listener, net.PacketConn, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tcp, err := net.Listen("tcp", "127.0.0.1:111")
		if err == nil {
			udp, uerr := net.ListenPacket("udp", "127.0.0.1:111")
			if uerr == nil {
				return tcp, udp, nil
			}
			tcp.Close()
			err = uerr
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStandardPorts: with the portmapper on port 111, clients given only
// the host find MOUNT and NFS: libnfs's nfs-cat and nfs-ls (which list
// the exports with MOUNT EXPORT first) and qemu-img's nfs:// driver read
// the disk byte-exact.
func TestStandardPorts(t *testing.T) {
	testenv.Root(t)
	testenv.Commands(t, "nfs-cat", "nfs-ls", "qemu-img")
	tcp, udp, err := listenPortmap()
	testenv.RequireOrSkip(t, err == nil, fmt.Sprintf("port 111 (the portmapper's) is taken: %v", err))
	f := newFixture(t, nfs.Options{})
	_, port, _ := net.SplitHostPort(f.addr)
	var nfsPort int
	fmt.Sscan(port, &nfsPort)
	pm := nfs.NewPortmap(nfsPort, 111, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- pm.ServeTCP(ctx, tcp) }()
	go func() { done <- pm.ServeUDP(ctx, udp) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("portmapper: %v", err)
			}
		}
	}()
	run := func(name string, args ...string) []byte {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var errb bytes.Buffer
		cmd := exec.CommandContext(c, name, args...)
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.String())
		}
		return out
	}
	url := "nfs://127.0.0.1/" + f.diskAt
	if got := run("nfs-cat", url); !bytes.Equal(got, f.img) {
		t.Fatalf("nfs-cat read %d bytes that differ from the image", len(got))
	}
	if out := run("nfs-ls", "nfs://127.0.0.1/"); !strings.Contains(string(out), "web01") {
		t.Fatalf("nfs-ls of the root:\n%s", out)
	}
	dst := t.TempDir() + "/disk.raw"
	run("qemu-img", "convert", "-O", "raw", url, dst)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, f.img) {
		t.Fatalf("qemu-img convert nfs:// wrote %d bytes that differ from the image", len(got))
	}
}

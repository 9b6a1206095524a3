package bootcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// qmp is a QEMU Machine Protocol session (docs/interop/qmp-spec in QEMU):
// one JSON object per line each way; replies carry "return" or "error",
// and asynchronous "event" objects may arrive in between.
type qmp struct {
	conn net.Conn
	dec  *json.Decoder
}

// newQMP reads QEMU's greeting on conn and leaves capabilities
// negotiation mode.
func newQMP(ctx context.Context, conn net.Conn) (*qmp, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	q := &qmp{conn: conn, dec: json.NewDecoder(conn)}
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("QMP: no greeting from QEMU: %v", err)
	}
	if err := q.execute("qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return q, nil
}

// execute runs one command and waits for its reply, skipping events.
func (q *qmp) execute(cmd string, args any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.conn).Encode(req); err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		var r struct {
			Return *json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.dec.Decode(&r); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		switch {
		case r.Error != nil:
			return fmt.Errorf("QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		case r.Return != nil:
			return nil
		}
	}
}

// screendump saves the guest's screen as a PNG file (QEMU 7.1 and later)
// through the QMP connection conn.
func screendump(ctx context.Context, conn net.Conn, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := newQMP(ctx, conn)
	if err != nil {
		return err
	}
	return q.execute("screendump", map[string]string{"filename": file, "format": "png"})
}

// socketPair is a connected pair of Unix stream sockets: ours as a
// net.Conn, QEMU's as a file to pass it.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ours := os.NewFile(uintptr(fds[0]), "qmp")
	defer ours.Close()
	conn, err := net.FileConn(ours)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return conn, os.NewFile(uintptr(fds[1]), "qmp-qemu"), nil
}

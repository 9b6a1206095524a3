package bootcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp is a QEMU Machine Protocol session (docs/interop/qmp-spec in QEMU):
// one JSON object per line each way; replies carry "return" or "error",
// and asynchronous "event" objects may arrive in between.
type qmp struct {
	conn net.Conn
	dec  *json.Decoder
}

// dialQMP connects to the QMP socket and leaves capabilities negotiation
// mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	q := &qmp{conn: conn, dec: json.NewDecoder(conn)}
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP: no greeting from QEMU: %v", err)
	}
	if err := q.execute("qmp_capabilities", nil); err != nil {
		conn.Close()
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

func (q *qmp) close() error { return q.conn.Close() }

// screendump saves the guest's screen as a PNG file (QEMU 7.1 and later).
func screendump(ctx context.Context, sock, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := dialQMP(ctx, sock)
	if err != nil {
		return err
	}
	defer q.close()
	return q.execute("screendump", map[string]string{"filename": file, "format": "png"})
}

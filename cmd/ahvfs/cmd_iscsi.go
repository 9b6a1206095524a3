package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ahvfs/ahvfs/iscsi"
	"github.com/urfave/cli/v2"
)

// The iscsi admin commands talk to a target directly, with ahvfs's own
// initiator: list targets and LUNs, read a LUN to stdout, write stdin to a
// LUN. URLs follow libiscsi's form,
// iscsi://[user[%secret]@]host[:port]/target-iqn/lun.

func init() { registerFunc(iscsiCommand) }

// initiatorIQNFlag is this host's iSCSI initiator name, the same flag in
// every command that speaks iSCSI.
func initiatorIQNFlag() cli.Flag {
	return &cli.StringFlag{Name: "initiator-iqn", Usage: "this host's iSCSI initiator `IQN` (default: /etc/iscsi/initiatorname.iscsi, else iqn.2026-11.io.ahvfs:HOSTNAME)",
		EnvVars: []string{"AHVFS_ISCSI_INITIATOR"}}
}

// iscsiFlags are the flags of every iscsi subcommand.
func iscsiFlags(own ...cli.Flag) []cli.Flag {
	return append(own, initiatorIQNFlag(),
		// The name these commands gave --initiator-iqn before.
		&cli.StringFlag{Name: "initiator-name", Hidden: true, Usage: "deprecated: use --initiator-iqn"},
		&cli.BoolFlag{Name: "header-digest", Usage: "require CRC32C header digests"},
		&cli.BoolFlag{Name: "data-digest", Usage: "require CRC32C data digests"},
	)
}

func iscsiCommand() *cli.Command {
	urlHelp := "URL is iscsi://[user[%secret]@]host[:port]/target-iqn/lun (libiscsi's form). " +
		"A CHAP secret missing from the URL is read from $AHVFS_ISCSI_SECRET; for mutual CHAP " +
		"add ?target_user=NAME and set $AHVFS_ISCSI_TARGET_SECRET (or target_password=)."
	return &cli.Command{
		Name:  "iscsi",
		Usage: "talk to an iSCSI target with ahvfs's initiator (admin and debugging)",
		Subcommands: []*cli.Command{
			{
				Name:        "ls",
				Usage:       "list the targets of a portal and their LUNs",
				ArgsUsage:   "iscsi://[user[%secret]@]HOST[:PORT][/TARGET-IQN]",
				Description: urlHelp,
				Flags:       iscsiFlags(),
				Action: func(c *cli.Context) error {
					u, err := iscsiURLArg(c, false)
					if err != nil {
						return err
					}
					return runISCSILs(c.Context, envFrom(c), iscsiOptions(c, u))
				},
			},
			{
				Name:        "cat",
				Usage:       "write a LUN's bytes to stdout",
				ArgsUsage:   "iscsi://[user[%secret]@]HOST[:PORT]/TARGET-IQN/LUN",
				Description: urlHelp,
				Flags: iscsiFlags(
					newSizeFlag("offset", "0", "first byte to read, a `SIZE`"),
					newSizeFlag("length", "", "`SIZE` to read (default: to the end of the LUN)"),
				),
				Action: func(c *cli.Context) error {
					u, err := iscsiURLArg(c, true)
					if err != nil {
						return err
					}
					length := int64(-1)
					if c.IsSet("length") {
						length = flagSize(c, "length")
					}
					return runISCSICat(c.Context, envFrom(c), iscsiOptions(c, u), u.LUN, flagSize(c, "offset"), length)
				},
			},
			{
				Name:        "write",
				Usage:       "write stdin to a LUN",
				ArgsUsage:   "iscsi://[user[%secret]@]HOST[:PORT]/TARGET-IQN/LUN",
				Description: urlHelp,
				Flags:       iscsiFlags(newSizeFlag("offset", "", "where the first byte goes, a `SIZE`").required()),
				Action: func(c *cli.Context) error {
					u, err := iscsiURLArg(c, true)
					if err != nil {
						return err
					}
					return runISCSIWrite(c.Context, envFrom(c), iscsiOptions(c, u), u.LUN, flagSize(c, "offset"))
				},
			},
		},
	}
}

// iscsiURLArg parses the one URL argument; needLUN requires target and LUN.
func iscsiURLArg(c *cli.Context, needLUN bool) (*iscsi.URL, error) {
	if c.NArg() != 1 {
		return nil, usagef("iscsi %s: want one iscsi:// URL argument", c.Command.Name)
	}
	u, err := iscsi.ParseURL(c.Args().First())
	if err != nil {
		return nil, usagef("%v", err)
	}
	if needLUN && (u.TargetIQN == "" || !u.HasLUN) {
		return nil, usagef("iscsi %s: URL %s names no target and LUN (want .../TARGET-IQN/LUN)", c.Command.Name, u)
	}
	if u.CHAP.User != "" && u.CHAP.Secret == "" {
		u.CHAP.Secret = os.Getenv("AHVFS_ISCSI_SECRET")
		if u.CHAP.Secret == "" {
			return nil, usagef("iscsi %s: CHAP user %q has no secret: put it in the URL (user%%secret@) or in $AHVFS_ISCSI_SECRET", c.Command.Name, u.CHAP.User)
		}
	}
	if u.CHAP.TargetUser != "" && u.CHAP.TargetSecret == "" {
		u.CHAP.TargetSecret = os.Getenv("AHVFS_ISCSI_TARGET_SECRET")
		if u.CHAP.TargetSecret == "" {
			return nil, usagef("iscsi %s: mutual CHAP needs target_password= or $AHVFS_ISCSI_TARGET_SECRET", c.Command.Name)
		}
	}
	return u, nil
}

func iscsiOptions(c *cli.Context, u *iscsi.URL) iscsi.Options {
	o := u.Options()
	o.InitiatorIQN = firstNonEmptyStr(c.String("initiator-iqn"), c.String("initiator-name"))
	o.HeaderDigest = o.HeaderDigest || c.Bool("header-digest")
	o.DataDigest = o.DataDigest || c.Bool("data-digest")
	return o
}

// iscsiLUNInfo is one LUN in `iscsi ls` output.
type iscsiLUNInfo struct {
	LUN       uint64 `json:"lun"`
	Type      string `json:"type"`
	Vendor    string `json:"vendor"`
	Product   string `json:"product"`
	Size      int64  `json:"size,omitempty"`
	BlockSize int    `json:"block_size,omitempty"`
	Serial    string `json:"serial,omitempty"`
	WWN       string `json:"wwn,omitempty"`
	Error     string `json:"error,omitempty"`
}

// iscsiTargetInfo is one target in `iscsi ls` output.
type iscsiTargetInfo struct {
	Name      string         `json:"name"`
	Addresses []string       `json:"addresses"`
	Portal    string         `json:"portal,omitempty"` // where the session went (after redirects)
	LUNs      []iscsiLUNInfo `json:"luns"`
	Error     string         `json:"error,omitempty"`
}

// runISCSILs discovers the targets of o.Portal (or takes o.TargetIQN) and
// lists each target's LUNs. A target that cannot be opened is reported
// and makes the command fail after listing the others.
func runISCSILs(ctx context.Context, env *cliEnv, o iscsi.Options) error {
	o.Logger = env.Log
	var targets []iscsi.Target
	if o.TargetIQN != "" {
		targets = []iscsi.Target{{Name: o.TargetIQN}}
	} else {
		var err error
		if targets, err = iscsi.Discover(ctx, o); err != nil {
			return err
		}
	}
	out := make([]iscsiTargetInfo, 0, len(targets))
	var failed error
	for _, tg := range targets {
		ti := iscsiTargetInfo{Name: tg.Name, Addresses: tg.Addresses, LUNs: []iscsiLUNInfo{}}
		if ti.Addresses == nil {
			ti.Addresses = []string{}
		}
		if err := listTarget(ctx, o, &ti); err != nil {
			ti.Error = err.Error()
			failed = errors.Join(failed, err)
		}
		out = append(out, ti)
	}
	if env.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"targets": out}); err != nil {
			return err
		}
		return failed
	}
	for _, ti := range out {
		fmt.Fprintf(env.Stdout, "Target: %s", ti.Name)
		if len(ti.Addresses) > 0 {
			fmt.Fprintf(env.Stdout, " %v", ti.Addresses)
		}
		if ti.Portal != "" && (len(ti.Addresses) == 0 || ti.Addresses[0] != ti.Portal+",1") {
			fmt.Fprintf(env.Stdout, " (session at %s)", ti.Portal)
		}
		fmt.Fprintln(env.Stdout)
		if ti.Error != "" {
			fmt.Fprintf(env.Stdout, "  error: %s\n", ti.Error)
		}
		for _, l := range ti.LUNs {
			fmt.Fprintf(env.Stdout, "  LUN %-3d %-10s %-8s %-16s", l.LUN, l.Type, l.Vendor, l.Product)
			if l.Size > 0 {
				fmt.Fprintf(env.Stdout, " %d bytes (%d-byte blocks)", l.Size, l.BlockSize)
			}
			if l.Serial != "" {
				fmt.Fprintf(env.Stdout, " serial %s", l.Serial)
			}
			if l.WWN != "" {
				fmt.Fprintf(env.Stdout, " %s", l.WWN)
			}
			if l.Error != "" {
				fmt.Fprintf(env.Stdout, " error: %s", l.Error)
			}
			fmt.Fprintln(env.Stdout)
		}
	}
	return failed
}

func listTarget(ctx context.Context, o iscsi.Options, ti *iscsiTargetInfo) error {
	o.TargetIQN = ti.Name
	s, err := iscsi.Dial(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	ti.Portal = s.Info().Portal
	luns, err := s.ReportLUNs(ctx)
	if err != nil {
		return err
	}
	for _, n := range luns {
		li := iscsiLUNInfo{LUN: n}
		inq, err := s.Inquiry(ctx, n)
		if err != nil {
			li.Error = err.Error()
			ti.LUNs = append(ti.LUNs, li)
			continue
		}
		li.Type, li.Vendor, li.Product = inq.DeviceType.String(), inq.Vendor, inq.Product
		if inq.DeviceType == iscsi.TypeDisk && inq.Qualifier == 0 {
			if lun, err := s.LUN(ctx, n); err != nil {
				li.Error = err.Error()
			} else {
				li.Size, li.BlockSize = lun.Size(), lun.BlockSize()
				li.Serial, _ = lun.Serial(ctx)
				if ids, err := lun.DeviceID(ctx); err == nil {
					for _, id := range ids {
						if id.Association == 0 && id.Type == 3 {
							li.WWN = id.String()
							break
						}
					}
				}
			}
		}
		ti.LUNs = append(ti.LUNs, li)
	}
	return nil
}

// openISCSILUN dials o and opens LUN n; the caller closes the session.
func openISCSILUN(ctx context.Context, o iscsi.Options, n uint64) (*iscsi.Session, *iscsi.LUN, error) {
	s, err := iscsi.Dial(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	lun, err := s.LUN(ctx, n)
	if err != nil {
		s.Close(ctx)
		return nil, nil, err
	}
	return s, lun, nil
}

// iscsiChunk is what one ReadAt or WriteAt of the admin commands moves; the
// initiator splits it into commands that run concurrently.
const iscsiChunk = 8 << 20

// runISCSICat copies length bytes (-1: to the end) of LUN n from offset to
// stdout, reading the next chunk while the previous one is written.
func runISCSICat(ctx context.Context, env *cliEnv, o iscsi.Options, n uint64, offset, length int64) error {
	o.Logger = env.Log
	s, lun, err := openISCSILUN(ctx, o, n)
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	size := lun.Size()
	if length < 0 {
		length = size - offset
	}
	if offset < 0 || offset > size || length < 0 || offset+length > size {
		return usagef("iscsi cat: range %d+%d is outside LUN %d (%d bytes)", offset, length, n, size)
	}
	type chunk struct {
		buf []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan chunk, 1)
	free := make(chan []byte, 2)
	free <- make([]byte, iscsiChunk)
	free <- make([]byte, iscsiChunk)
	go func() {
		defer close(chunks)
		for pos := offset; pos < offset+length; {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			k := min(int64(len(buf)), offset+length-pos)
			_, err := lun.ReadAtContext(ctx, buf[:k], pos)
			select {
			case chunks <- chunk{buf[:k], err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			pos += k
		}
	}()
	out := ctxWriter{ctx, env.Stdout}
	for c := range chunks {
		if c.err != nil {
			return c.err
		}
		if _, err := out.Write(c.buf); err != nil {
			return fmt.Errorf("iscsi cat: write output: %w", err)
		}
		free <- c.buf[:cap(c.buf)]
	}
	return ctx.Err()
}

// runISCSIWrite copies stdin to LUN n from offset and flushes the LUN's
// cache. It fails before writing past the end.
func runISCSIWrite(ctx context.Context, env *cliEnv, o iscsi.Options, n uint64, offset int64) error {
	o.Logger = env.Log
	s, lun, err := openISCSILUN(ctx, o, n)
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	if offset < 0 || offset > lun.Size() {
		return usagef("iscsi write: offset %d is outside LUN %d (%d bytes)", offset, n, lun.Size())
	}
	buf := make([]byte, iscsiChunk)
	pos := offset
	in := ctxReader{ctx, env.Stdin}
	for {
		k, rerr := io.ReadFull(in, buf)
		if k > 0 {
			if pos+int64(k) > lun.Size() {
				return fmt.Errorf("iscsi write: input passes the end of LUN %d (%d bytes) after %d bytes written", n, lun.Size(), pos-offset)
			}
			if _, err := lun.WriteAtContext(ctx, buf[:k], pos); err != nil {
				return err
			}
			pos += int64(k)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("iscsi write: read input: %w", rerr)
		}
	}
	if err := lun.Sync(ctx); err != nil {
		return err
	}
	if env.JSON {
		return json.NewEncoder(env.Stdout).Encode(map[string]int64{"offset": offset, "bytes": pos - offset})
	}
	return nil
}

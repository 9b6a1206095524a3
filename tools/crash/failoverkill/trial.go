package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

func (k *killer) failoverArgs(mode string) []string {
	if mode == "instant" {
		return []string{"failover", "test", k.plan}
	}
	args := []string{"failover", mode}
	if mode == "unplanned" {
		args = append(args, "--force") // the source simulator stays up, to be checked
	}
	return append(args, k.plan)
}

// failbackTrial moves the VMs to DR (an unkilled planned failover), then
// kills `failover permanent` and `failback` each once at a random moment
// and resumes each: a failback has no undo, only its end. The VMs must be
// back at the source with their DR disks, and both sites clean.
func (k *killer) failbackTrial(ctx context.Context, i int) error {
	at := fmt.Sprintf("failback trial %d", i)
	if err := k.changeSource("planned"); err != nil {
		return err
	}
	if _, err := k.ahvfs(ctx, at, k.failoverArgs("planned")...); err != nil {
		k.chk.Fail(at, fmt.Sprintf("the planned failover before the failback: %v", err), "")
		k.undo(ctx, at, "failback")
		return nil
	}
	k.killAndResume(ctx, at, "permanent", k.permDur, "failover", "permanent", k.plan)
	want, err := k.changeDR()
	if err != nil {
		return err
	}
	k.killAndResume(ctx, at, "failback", k.dur, "failback", k.plan)
	k.checkBack(at, want)
	k.checkBaseline(at)
	return nil
}

// killAndResume runs args, kills it after a delay drawn from [0, 1.2×]
// dur, checks the status, and runs it again to its end unless the plan's
// state says there is nothing left to do.
func (k *killer) killAndResume(ctx context.Context, at, what string, dur time.Duration, args ...string) {
	span := dur * 6 / 5
	delay := time.Duration(k.rnd.Int64N(int64(span) + 1))
	at = fmt.Sprintf("%s, %s killed at %v of [0, %v)", at, what, delay.Round(time.Millisecond), span.Round(time.Millisecond))
	p, err := crashproc.Start(k.o.Ahvfs, nil, nil, args...)
	if err != nil {
		k.chk.Fail(at, err.Error(), "")
		return
	}
	p.KillAfter(delay)
	k.chk.Scan(at, p)
	if p.Killed() {
		k.res.killed["failback"]++
	} else if p.Err != nil {
		k.chk.Fail(at, fmt.Sprintf("%s exited with %v before its kill", what, p.Err), p.Report())
	}
	st, err := k.status(ctx, at)
	if err != nil {
		k.chk.Fail(at, err.Error(), "")
		return
	}
	if st.State == nil {
		return // a failback that ended before its kill
	}
	if _, err := k.ahvfs(ctx, at, args...); err != nil {
		k.chk.Fail(at, fmt.Sprintf("%s resumed: %v", what, err), "")
	}
	k.res.resumed["failback"]++
}

// trial starts a failover of mode, kills it after a delay drawn from
// [0, 1.2×] an unkilled one's duration, checks the status, then resumes
// (even trials) or undoes it, and checks both sites.
func (k *killer) trial(ctx context.Context, mode string, i int) error {
	if err := k.changeSource(mode); err != nil {
		return err
	}
	span := k.dur * 6 / 5
	delay := time.Duration(k.rnd.Int64N(int64(span) + 1))
	at := fmt.Sprintf("%s trial %d (killed at %v of [0, %v))", mode, i, delay.Round(time.Millisecond), span.Round(time.Millisecond))
	p, err := crashproc.Start(k.o.Ahvfs, nil, nil, k.failoverArgs(mode)...)
	if err != nil {
		return err
	}
	p.KillAfter(delay)
	k.chk.Scan(at, p)
	if p.Killed() {
		k.res.killed[mode]++
	} else if p.Err != nil {
		k.chk.Fail(at, fmt.Sprintf("the failover exited with %v before its kill", p.Err), p.Report())
	}
	st, err := k.status(ctx, at)
	if err != nil {
		return err
	}
	if i%2 == 0 {
		if st.State == nil || !st.State.Done {
			if _, err := k.ahvfs(ctx, at, k.failoverArgs(mode)...); err != nil {
				k.chk.Fail(at, fmt.Sprintf("the resumed failover: %v", err), "")
			}
		}
		k.checkUp(at, mode)
		k.res.resumed[mode]++
	}
	k.undo(ctx, at, mode)
	if k.o.Verbose {
		fmt.Fprintf(k.out, "%s: %s\n", at, st.summary())
	}
	return nil
}

// undo runs `failover undo --force` when the plan has a state, and
// checks both sites.
func (k *killer) undo(ctx context.Context, at, mode string) {
	st, err := k.status(ctx, at)
	if err != nil {
		k.chk.Fail(at, err.Error(), "")
		return
	}
	if st.State != nil {
		if _, err := k.ahvfs(ctx, at, "failover", "undo", "--force", k.plan); err != nil {
			k.chk.Fail(at, fmt.Sprintf("undo: %v", err), "")
		}
		k.res.undone[mode]++
	}
	if st, err := k.status(ctx, at); err != nil || st.State != nil {
		k.chk.Fail(at, fmt.Sprintf("a state is left after undo (%v)", err), "")
	}
	k.checkBaseline(at)
}

// planStatus is what `failover status --json` prints.
type planStatus struct {
	State *struct {
		Mode string
		Done bool
		VMs  []struct {
			VM, Name, Status string
			Back             *struct{ Status string }
		}
	}
	Live []struct {
		Name       string
		Exists     bool
		PowerState string `json:"power_state"`
	}
}

func (s planStatus) summary() string {
	if s.State == nil {
		return "no state"
	}
	var out []string
	for _, v := range s.State.VMs {
		out = append(out, v.VM+":"+v.Status)
	}
	return strings.Join(out, " ")
}

// status reads the plan's status and checks it against both sites.
func (k *killer) status(ctx context.Context, at string) (planStatus, error) {
	var st planStatus
	var out bytes.Buffer
	if _, err := k.ahvfsTo(ctx, at, &out, "failover", "status", "--json", k.plan); err != nil {
		return st, err
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("status --json: %w", err)
	}
	if st.State == nil {
		return st, nil
	}
	k.prod.WaitTasks(time.Minute)
	prod := k.prod.Objects()
	for i, v := range st.State.VMs {
		if v.Back != nil && v.Back.Status != "pending" {
			// A failback shuts the DR VM down and then removes it.
			if v.Back.Status != "stopping" && i < len(st.Live) && st.Live[i].Exists && st.Live[i].PowerState != "OFF" {
				k.chk.Fail(at, fmt.Sprintf("failback status says %s is %s; the DR site says it is %s", v.Name, v.Back.Status, st.Live[i].PowerState), "")
			}
			continue
		}
		if v.Status == "on" && (i >= len(st.Live) || !st.Live[i].Exists || st.Live[i].PowerState != "ON") {
			k.chk.Fail(at, fmt.Sprintf("status says %s is on; the DR site says %+v", v.Name, st.Live), "")
		}
		if v.Status == "stopped" || v.Status == "backed-up" {
			if j := slices.IndexFunc(prod.VMs, func(p prismsim.VMObject) bool { return p.Name == v.VM }); j < 0 || prod.VMs[j].PowerState != "OFF" {
				k.chk.Fail(at, fmt.Sprintf("status says source %s is %s; the source site says it is not off", v.VM, v.Status), "")
			}
		}
	}
	return st, nil
}

// ahvfs runs a command to its end and checks its output for crashes.
func (k *killer) ahvfs(ctx context.Context, at string, args ...string) (*crashproc.Proc, error) {
	return k.ahvfsTo(ctx, at, nil, args...)
}

// ahvfsTo is ahvfs with stdout to w.
func (k *killer) ahvfsTo(ctx context.Context, at string, w io.Writer, args ...string) (*crashproc.Proc, error) {
	return k.chk.Run(ctx, k.o.Ahvfs, at, w, cmdTimeout, args...)
}

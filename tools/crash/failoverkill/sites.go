package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/tools/crash/crashproc"
)

// setup starts the two sites, adds the source VMs (db01 with NGT, web01
// without), makes the source and DR repositories and writes the plan.
func (k *killer) setup(ctx context.Context) error {
	var err error
	for _, s := range []struct {
		sim  **prismsim.Sim
		name string
	}{{&k.prod, "prod"}, {&k.drs, "dr"}} {
		// v4.2 for the instant plan's external repositories.
		o := prismsim.Options{StateDir: filepath.Join(k.work, s.name), TaskDelay: 5 * time.Millisecond, V4Revisions: []string{"v4.0", "v4.1", "v4.2"}}
		if *s.sim, err = prismsim.New(ctx, o); err != nil {
			return err
		}
	}
	size := k.o.SizeMiB << 20
	for i, name := range k.vms {
		img := filepath.Join(k.work, name+".raw")
		disk := make([]byte, size)
		copy(disk, crashproc.Chacha(k.rnd.Uint64(), size/2))
		if err := os.WriteFile(img, disk, 0o600); err != nil {
			return err
		}
		ngt := prismsim.NGTInstalled
		if i == 1 {
			ngt = prismsim.NGTAbsent
		}
		v, err := k.prod.AddVM(ctx, name, []string{img}, prismsim.VMOptions{NGT: ngt, Move: true})
		if err != nil {
			return err
		}
		k.sourceDisk[name] = v.Disks[0]
	}
	k.srcRepo, k.drRepo = filepath.Join(k.work, "src-repo"), filepath.Join(k.work, "dr-repo")
	for _, r := range []string{k.srcRepo, k.drRepo} {
		if _, err := k.ahvfs(ctx, "setup", "init", "--repo", r); err != nil {
			return err
		}
	}
	site := func(name string, s *prismsim.Sim) string {
		return fmt.Sprintf("[[cluster]]\nname = %q\nprism = %q\nuser = \"admin\"\npassword_file = %q\nca_cert = %q\napi = \"v3\"\n",
			name, s.Addr(), s.PasswordFile(), s.CAFile())
	}
	k.basePlan, k.instPlan = filepath.Join(k.work, "plan.toml"), filepath.Join(k.work, "instant-plan.toml")
	plan := fmt.Sprintf(`source_cluster = "prod"
target_cluster = "dr"
target_ahv_cluster = "cluster-b"
repository = %q
source_repository = %q
data_path = "rest"
network_map = ["vlan10=vlan20"]
test_network_map = ["vlan10=vlan20"]
shutdown_timeout = "2s"
[[stage]]
vms = ["db01"]
[[stage]]
vms = ["web01"]
`, k.drRepo, k.srcRepo) + site("prod", k.prod)
	if err := os.WriteFile(k.basePlan, []byte(plan+site("dr", k.drs)), 0o600); err != nil {
		return err
	}
	k.plan = k.basePlan
	// The instant plan is written when nfs-serve has a port (startNFS).
	k.instBody = plan + strings.Replace(site("dr", k.drs), `api = "v3"`, `api = "v4"`, 1)
	k.drs.WaitTasks(time.Minute)
	k.drBefore = k.drs.Objects()
	return nil
}

// refresh backs the source VMs up and syncs them to DR: the DR
// repository's newest points are then the source disks as they are.
func (k *killer) refresh(ctx context.Context) error {
	if _, err := k.ahvfs(ctx, "refresh", "backup", "--repo", k.srcRepo, "--prism", k.prod.URL(), "--password-file", k.prod.PasswordFile(),
		"--ca-cert", k.prod.CAFile(), "--api", "v3", "--data-path", "rest"); err != nil {
		return err
	}
	if _, err := k.ahvfs(ctx, "refresh", "sync", "--repo", k.srcRepo, "--to", k.drRepo); err != nil {
		return err
	}
	for _, vm := range k.vms {
		b, err := os.ReadFile(k.sourceDisk[vm])
		if err != nil {
			return err
		}
		k.atDR[vm] = b
	}
	return nil
}

// changeSource writes new data into each source disk before a planned
// failover, so that its final backups carry something.
func (k *killer) changeSource(mode string) error {
	if mode != "planned" {
		return nil
	}
	for _, vm := range k.vms {
		f, err := os.OpenFile(k.sourceDisk[vm], os.O_RDWR, 0)
		if err != nil {
			return err
		}
		patch := crashproc.Chacha(k.rnd.Uint64(), 256<<10)
		st, _ := f.Stat()
		_, err = f.WriteAt(patch, k.rnd.Int64N(st.Size()-int64(len(patch))))
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// checkUp checks a failover that ran to its end: the VMs on at DR under
// the mode's names, each disk what the mode promises, and (planned) the
// source VMs off.
func (k *killer) checkUp(at, mode string) {
	k.drs.WaitTasks(time.Minute)
	dr, prod := k.drs.Objects(), k.prod.Objects()
	for _, vm := range k.vms {
		name := vm
		if mode == "test" || mode == "instant" {
			name += "-drtest"
		}
		i := slices.IndexFunc(dr.VMs, func(v prismsim.VMObject) bool { return v.Name == name })
		if i < 0 || dr.VMs[i].PowerState != "ON" {
			k.chk.Fail(at, fmt.Sprintf("%s is not on at the DR site after the failover ended", name), "")
			continue
		}
		want := k.atDR[vm]
		if mode == "planned" {
			want, _ = os.ReadFile(k.sourceDisk[vm])
			if j := slices.IndexFunc(prod.VMs, func(v prismsim.VMObject) bool { return v.Name == vm }); j < 0 || prod.VMs[j].PowerState != "OFF" {
				k.chk.Fail(at, fmt.Sprintf("source %s is not off after a planned failover", vm), "")
			}
		}
		// The guest's view: an instant copy's blocks not yet hydrated come
		// from nfs-serve.
		got := make([]byte, len(want))
		err := k.drs.ReadDisk(dr.VMs[i].UUID, 0, 0, got)
		if err != nil || len(want) == 0 || !bytes.Equal(got, want) {
			k.chk.Fail(at, fmt.Sprintf("%s at DR: its disk is not what the %s failover promises (%v)", name, mode, err), "")
		}
	}
	if len(dr.VolumeGroups) > 0 {
		k.chk.Fail(at, fmt.Sprintf("%d volume groups left at the DR site", len(dr.VolumeGroups)), "")
	}
}

// checkBaseline checks both sites after an undo or a failback: DR as before the
// trials, every source VM on, nothing left at the source but the
// backups' reference snapshots.
func (k *killer) checkBaseline(at string) {
	k.drs.WaitTasks(time.Minute)
	k.prod.WaitTasks(time.Minute)
	dr, prod := k.drs.Objects(), k.prod.Objects()
	names := func(o prismsim.Objects) []string {
		var out []string
		for _, v := range o.VMs {
			out = append(out, v.Name+"/"+v.PowerState)
		}
		slices.Sort(out)
		return out
	}
	snaps := func(o prismsim.Objects) int { return len(o.Snapshots) + len(o.RecoveryPoints) }
	if !slices.Equal(names(dr), names(k.drBefore)) || len(dr.Images) != len(k.drBefore.Images) || len(dr.VolumeGroups) > 0 || snaps(dr) != snaps(k.drBefore) ||
		len(dr.ExternalRepositories) > 0 {
		k.chk.Fail(at, fmt.Sprintf("DR site after undo or failback: VMs %v, %d images, %d volume groups, %d snapshots, %d external repositories; before: %v, %d images, %d snapshots",
			names(dr), len(dr.Images), len(dr.VolumeGroups), snaps(dr), len(dr.ExternalRepositories), names(k.drBefore), len(k.drBefore.Images), snaps(k.drBefore)), "")
	}
	var holds bytes.Buffer
	var held []json.RawMessage
	if _, err := k.ahvfsTo(context.Background(), at, &holds, "holds", "--json", "--repo", k.drRepo); err != nil || json.Unmarshal(holds.Bytes(), &held) != nil || len(held) > 0 {
		k.chk.Fail(at, fmt.Sprintf("the DR repository holds restore points after undo or failback: %s (%v)", holds.Bytes(), err), "")
	}
	for _, v := range prod.VMs {
		if v.PowerState != "ON" {
			k.chk.Fail(at, fmt.Sprintf("source %s is %s after undo, want ON", v.Name, v.PowerState), "")
		}
	}
	if n := snaps(prod); n > len(k.vms) || len(prod.VolumeGroups) > 0 || len(prod.Images) > 0 {
		k.chk.Fail(at, fmt.Sprintf("source site keeps %d snapshots and recovery points (references: at most %d), %d volume groups, %d images",
			n, len(k.vms), len(prod.VolumeGroups), len(prod.Images)), "")
	}
}

// changeDR writes new data into each DR VM's disk (the VMs work at the
// DR site) and returns the disks as they are then: what a failback must
// bring back.
func (k *killer) changeDR() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, vm := range k.vms {
		info, ok := k.drs.VM(vm)
		if !ok {
			return nil, fmt.Errorf("no %s at the DR site", vm)
		}
		f, err := os.OpenFile(info.Disks[0], os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		patch := crashproc.Chacha(k.rnd.Uint64(), 128<<10)
		st, _ := f.Stat()
		_, err = f.WriteAt(patch, k.rnd.Int64N(st.Size()-int64(len(patch))))
		f.Close()
		if err != nil {
			return nil, err
		}
		if out[vm], err = os.ReadFile(info.Disks[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkBack checks a failback that ran to its end: each VM on at the
// source, its disk what it was at DR, and no state left.
func (k *killer) checkBack(at string, want map[string][]byte) {
	k.prod.WaitTasks(time.Minute)
	prod := k.prod.Objects()
	for _, vm := range k.vms {
		var on []prismsim.VMObject
		for _, v := range prod.VMs {
			if v.Name == vm {
				on = append(on, v)
			}
		}
		if len(on) != 1 || on[0].PowerState != "ON" {
			k.chk.Fail(at, fmt.Sprintf("%s at the source after failback: %+v, want one VM on", vm, on), "")
			continue
		}
		info, _ := k.prod.VM(on[0].UUID)
		k.sourceDisk[vm] = info.Disks[0]
		got, err := os.ReadFile(info.Disks[0])
		if err != nil || !bytes.Equal(got, want[vm]) {
			k.chk.Fail(at, fmt.Sprintf("%s at the source after failback: its disk is not the DR disk at shutdown (%v)", vm, err), "")
		}
	}
}

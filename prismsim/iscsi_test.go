package prismsim_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ahvfs/ahvfs/internal/testenv"
	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

const initiator = "iqn.2024-01.io.ahvfs:test-proxy"

func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func iscsiURL(s *prismsim.Sim, iqn string, lun int, user, secret string) string {
	cred := ""
	if user != "" {
		cred = user + "%" + secret + "@"
	}
	return fmt.Sprintf("iscsi://%s%s/%s/%d", cred, s.ISCSIPortal(), iqn, lun)
}

func qemuOpts(s *prismsim.Sim, iqn string, lun int) string {
	host, port, _ := strings.Cut(s.ISCSIPortal(), ":")
	return fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s:%s,file.target=%s,file.lun=%d,file.initiator-name=%s",
		host, port, iqn, lun, initiator)
}

// TestV2VolumeGroupISCSIRedirect: the v2 path of a backup — v2 snapshot,
// VG create with clone_config (ndfs_filepath + snapshot_group_uuid from the
// snapshot's vm_create_spec), /open for an initiator IQN — gives a target
// that SendTargets lists on the Data Services IP portal and whose login is
// redirected (0x0101) to the CVM portal, where LUN 1 holds the snapshot's
// bytes. Initiator writes land in the clone, not the snapshot. /close and
// delete remove the target. Close leaves no tgtd behind.
func TestV2VolumeGroupISCSIRedirect(t *testing.T) {
	testenv.Commands(t, "iscsi-inq", "iscsi-ls", "iscsi-readcapacity16", "qemu-img", "qemu-io")
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	a := newAPI(t, s)
	img := makeDisk(t, t.TempDir(), 128*blk, 0, 7, 100)
	v, err := s.AddVM(context.Background(), "iscsi-vm", []string{img}, prismsim.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := a.do("POST", "/PrismGateway/services/rest/v2.0/snapshots/", map[string]any{
		"snapshot_specs": []any{map[string]any{"vm_uuid": v.UUID, "snapshot_name": "bk"}}}).must(t, 201)
	task := a.waitV2Task(str(r.body, "task_uuid"))
	snapID := str(task, "entity_list[0].entity_id")
	sn := a.do("GET", "/PrismGateway/services/rest/v2.0/snapshots/"+snapID, nil).must(t, 200)
	clone := get(sn.body, "vm_create_spec.vm_disks[0].vm_disk_clone").(map[string]any)
	cl := a.do("GET", "/PrismGateway/services/rest/v2.0/cluster/", nil).must(t, 200)
	if host, _, _ := strings.Cut(s.ISCSIPortal(), ":"); str(cl.body, "cluster_external_data_services_ipaddress") != host {
		t.Errorf("DSIP %q, portal %s", str(cl.body, "cluster_external_data_services_ipaddress"), s.ISCSIPortal())
	}
	// Guest writes after the snapshot must not show through the clone.
	live, _ := os.OpenFile(v.Disks[0], os.O_RDWR, 0)
	writeBlock(t, live, 7, true)
	live.Close()
	snapFiles, _ := s.SnapshotDiskFiles(snapID)
	snapBytes := readAll(t, snapFiles[0])

	r = a.do("POST", "/api/nutanix/v2.0/volume_groups/", map[string]any{"name": "bk-vg", "disk_list": []any{
		map[string]any{"index": 0, "clone_config": map[string]any{
			"disk_address":        map[string]any{"ndfs_filepath": get(clone, "disk_address.ndfs_filepath")},
			"snapshot_group_uuid": clone["snapshot_group_uuid"], "storage_container_uuid": clone["storage_container_uuid"]}}}}).must(t, 201)
	task = a.waitV2Task(str(r.body, "task_uuid"))
	vgID := str(task, "entity_list[0].entity_id")
	vg := a.do("GET", "/PrismGateway/services/rest/v2.0/volume_groups/"+vgID, nil).must(t, 200)
	iqn := str(vg.body, "iscsi_target")
	if !strings.HasPrefix(iqn, "iqn.2010-06.com.nutanix:bk-vg-") || num(vg.body, "disk_list[0].vmdisk_size_bytes") != 128*blk {
		t.Fatalf("vg: %s", vg.raw)
	}
	// Not attached yet: login refused.
	if out, err := runCmd(t, 10*time.Second, "iscsi-inq", "-i", initiator, iscsiURL(s, iqn, 1, "", "")); err == nil {
		t.Fatalf("login before /open succeeded: %s", out)
	}
	a.do("POST", "/PrismGateway/services/rest/v2.0/volume_groups/"+vgID+"/open", map[string]any{
		"uuid": vgID, "operation": "ATTACH", "iscsi_client": map[string]any{"client_address": initiator}}).must(t, 200)
	out, err := runCmd(t, 10*time.Second, "iscsi-ls", "-i", initiator, "-s", "iscsi://"+s.ISCSIPortal())
	if err != nil || !strings.Contains(out, iqn) || !strings.Contains(out, "Portal:"+s.ISCSIPortal()) {
		t.Fatalf("iscsi-ls: %v\n%s", err, out)
	}
	if out, err := runCmd(t, 10*time.Second, "iscsi-inq", "-i", initiator, iscsiURL(s, iqn, 1, "", "")); err != nil || !strings.Contains(out, "DIRECT_ACCESS") {
		t.Fatalf("iscsi-inq via the DSIP redirect: %v\n%s", err, out)
	}
	if out, err := runCmd(t, 10*time.Second, "iscsi-readcapacity16", "-i", initiator, iscsiURL(s, iqn, 1, "", "")); err != nil || !strings.Contains(out, fmt.Sprintf("Total size:%d", 128*blk)) {
		t.Fatalf("readcapacity16: %v\n%s", err, out)
	}
	// Read the LUN through the redirect and compare with the snapshot.
	dump := filepath.Join(t.TempDir(), "lun.raw")
	if out, err := runCmd(t, 30*time.Second, "qemu-img", "convert", "--image-opts", qemuOpts(s, iqn, 1), "-O", "raw", dump); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	if !bytes.Equal(readAll(t, dump), snapBytes) {
		t.Fatal("LUN 1 bytes differ from the snapshot disk")
	}
	// Initiator writes go to the clone only.
	if out, err := runCmd(t, 30*time.Second, "qemu-io", "--image-opts", qemuOpts(s, iqn, 1), "-c", "write -P 0xab 0 64k"); err != nil {
		t.Fatalf("qemu-io write: %v\n%s", err, out)
	}
	vgFiles, _ := s.VolumeGroupDiskFiles(vgID)
	if b := readAll(t, vgFiles[0]); b[0] != 0xab || b[blk-1] != 0xab {
		t.Error("initiator write did not reach the VG disk file")
	}
	if !bytes.Equal(readAll(t, snapFiles[0]), snapBytes) {
		t.Error("initiator write changed the snapshot")
	}
	// Fault: drop a live connection (qemu-io holds one while it sleeps).
	held := exec.Command("qemu-io", "--image-opts", qemuOpts(s, iqn, 1), "-c", "read 0 4k", "-c", "sleep 3000", "-c", "read 0 4k")
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	var dropped int
	for i := 0; i < 100 && dropped == 0; i++ {
		time.Sleep(20 * time.Millisecond)
		if dropped, err = s.DropISCSIConnections(context.Background()); err != nil {
			t.Error(err)
		}
	}
	held.Process.Kill()
	held.Wait()
	if dropped == 0 {
		t.Error("DropISCSIConnections found no connection to drop")
	}
	a.do("POST", "/PrismGateway/services/rest/v2.0/volume_groups/"+vgID+"/close", map[string]any{
		"uuid": vgID, "operation": "DETACH", "iscsi_client": map[string]any{"client_address": initiator}}).must(t, 200)
	if out, err := runCmd(t, 10*time.Second, "iscsi-inq", "-i", initiator, iscsiURL(s, iqn, 1, "", "")); err == nil {
		t.Fatalf("login after /close succeeded: %s", out)
	}
	r = a.do("DELETE", "/PrismGateway/services/rest/v2.0/volume_groups/"+vgID, nil).must(t, 201)
	a.waitV2Task(str(r.body, "task_uuid"))
	a.do("GET", "/PrismGateway/services/rest/v2.0/volume_groups/"+vgID, nil).must(t, 404)

	// Close kills both tgtd daemons.
	pids, ctls := s.TgtdPIDs(), s.TgtdControlPorts()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("tgtd %d still running after Close", pid)
		}
	}
	for _, c := range ctls {
		if out, _ := exec.Command("pgrep", "-f", "tgtd -f -C "+strconv.Itoa(c)+" ").Output(); len(out) > 0 {
			t.Errorf("tgtd with control port %d still running: %s", c, out)
		}
	}
}

// TestV4VolumeGroupFromRecoveryPointCHAP: the v4 path — VG with a disk
// whose diskDataSourceReference is a DISK_RECOVERY_POINT, attach-iscsi-client
// with a client secret (CHAP, user = initiator IQN), iSCSI via the redirect
// with and without credentials, detach-iscsi-client, delete with If-Match.
func TestV4VolumeGroupFromRecoveryPointCHAP(t *testing.T) {
	testenv.Commands(t, "iscsi-inq", "iscsi-readcapacity16")
	s := simtest.Start(t, simtest.Options{ISCSI: true})
	a := newAPI(t, s)
	img := makeDisk(t, t.TempDir(), 32*blk, 3)
	v, err := s.AddVM(context.Background(), "v4-iscsi", []string{img}, prismsim.VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rp, _ := v4RecoveryPoint(t, a, v.UUID, "CRASH_CONSISTENT")
	drp := str(rp, "vmRecoveryPoints[0].diskRecoveryPoints[0].diskRecoveryPointExtId")
	r := a.v4("POST", "/api/volumes/v4.0/config/volume-groups", map[string]any{"name": "rp-vg", "usageType": "BACKUP_TARGET",
		"sharingStatus": "SHARED", "disks": []any{map[string]any{"index": 0, "diskDataSourceReference": map[string]any{
			"$objectType": "common.v1.config.EntityReference", "extId": drp, "entityType": "DISK_RECOVERY_POINT"}}}}).must(t, 202)
	task := a.waitV4Task(str(r.body, "data.extId"))
	vgID := str(task, "entitiesAffected[0].extId")
	g := a.do("GET", "/api/volumes/v4.0/config/volume-groups/"+vgID, nil).must(t, 200)
	iqn := str(g.body, "data.targetName")
	disks := a.do("GET", "/api/volumes/v4.0/config/volume-groups/"+vgID+"/disks", nil).must(t, 200)
	if str(disks.body, "data[0].diskDataSourceReference.entityType") != "DISK_RECOVERY_POINT" || num(disks.body, "data[0].diskSizeBytes") != 32*blk {
		t.Fatalf("vg disks: %s", disks.raw)
	}
	const secret = "s3cret-chap-pw"
	r = a.v4("POST", "/api/volumes/v4.0/config/volume-groups/"+vgID+"/$actions/attach-iscsi-client", map[string]any{
		"$objectType": "volumes.v4.config.IscsiClient", "iscsiInitiatorName": initiator, "clientSecret": secret}).must(t, 202)
	task = a.waitV4Task(str(r.body, "data.extId"))
	var clientID string
	for _, e := range list(task, "entitiesAffected") {
		if str(e, "rel") == "volumes:config:iscsi-client" {
			clientID = str(e, "extId")
		}
	}
	c := a.do("GET", "/api/volumes/v4.0/config/iscsi-clients/"+clientID, nil).must(t, 200)
	if str(c.body, "data.attachedTargets[0].iscsiTargetName") != iqn {
		t.Fatalf("iscsi client: %s", c.raw)
	}
	if out, err := runCmd(t, 10*time.Second, "iscsi-inq", "-i", initiator, iscsiURL(s, iqn, 1, "", "")); err == nil {
		t.Fatalf("login without CHAP succeeded: %s", out)
	}
	if out, err := runCmd(t, 10*time.Second, "iscsi-readcapacity16", "-i", initiator, iscsiURL(s, iqn, 1, initiator, secret)); err != nil ||
		!strings.Contains(out, fmt.Sprintf("Total size:%d", 32*blk)) {
		t.Fatalf("CHAP login via redirect: %v\n%s", err, out)
	}
	r = a.v4("POST", "/api/volumes/v4.0/config/volume-groups/"+vgID+"/$actions/detach-iscsi-client", map[string]any{"extId": clientID}).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	if out, err := runCmd(t, 10*time.Second, "iscsi-inq", "-i", initiator, iscsiURL(s, iqn, 1, initiator, secret)); err == nil {
		t.Fatalf("login after detach succeeded: %s", out)
	}
	g = a.do("GET", "/api/volumes/v4.0/config/volume-groups/"+vgID, nil).must(t, 200)
	r = a.v4("DELETE", "/api/volumes/v4.0/config/volume-groups/"+vgID, nil, "If-Match", g.header.Get("ETag")).must(t, 202)
	a.waitV4Task(str(r.body, "data.extId"))
	a.do("GET", "/api/volumes/v4.0/config/volume-groups/"+vgID, nil).must(t, 404)
}

package rptree

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ahvfs/ahvfs/engine"
)

// vmJSON is the content of vm.json: the restore point's facts and the VM
// configuration, without the manifests.
func vmJSON(rp *engine.RestorePoint) []byte {
	type disk struct {
		Name     string            `json:"name"`
		Index    int               `json:"index"`
		Bus      string            `json:"bus,omitempty"`
		BusIndex int               `json:"bus_index"`
		Size     int64             `json:"size"`
		UUID     string            `json:"uuid,omitempty"`
		Reason   string            `json:"reason,omitempty"`
		Stats    engine.WriteStats `json:"stats"`
	}
	doc := struct {
		RestorePoint string            `json:"restore_point"`
		ID           string            `json:"id"`
		VM           string            `json:"vm"`
		VMUUID       string            `json:"vm_uuid,omitempty"`
		Time         time.Time         `json:"time"`
		Level        string            `json:"level"`
		Consistency  string            `json:"consistency,omitempty"`
		Parent       string            `json:"parent,omitempty"`
		Committed    time.Time         `json:"committed"`
		LogicalBytes int64             `json:"logical_bytes"`
		Disks        []disk            `json:"disks"`
		Meta         map[string]string `json:"meta,omitempty"`
		Stats        engine.WriteStats `json:"stats"`
		Config       json.RawMessage   `json:"config,omitempty"`
	}{
		RestorePoint: rp.Name(), ID: rp.ID, VM: rp.VM, VMUUID: rp.VMUUID, Time: rp.Time.UTC(),
		Level: rp.Level, Consistency: rp.Consistency, Parent: rp.Parent, Committed: rp.Committed.UTC(),
		LogicalBytes: rp.LogicalBytes(), Meta: rp.Meta, Stats: rp.Stats, Disks: []disk{},
	}
	if len(rp.Config) > 0 && json.Valid(rp.Config) {
		doc.Config = rp.Config
	}
	for _, d := range rp.Disks {
		doc.Disks = append(doc.Disks, disk{Name: d.Name(), Index: d.Index, Bus: d.Bus, BusIndex: d.BusIndex,
			Size: d.Size, UUID: d.UUID, Reason: d.Reason, Stats: d.Stats})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	return append(b, '\n')
}

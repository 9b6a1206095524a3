package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ahvfs/ahvfs/clusterjob"
	"github.com/ahvfs/ahvfs/engine"
	"github.com/ahvfs/ahvfs/nutanix"
)

// Before the journal, a backup kept its state in the repository index:
// "ref/<vm uuid>" (the Reference, JSON) and a ledger of temporary cluster
// objects "obj/<kind>/<name>". migrateLegacyState moves both into the
// journal — references into kept records, ledger entries into a dead job
// for the sweep — and then deletes them from the index.

const (
	legacyRefPrefix    = "ref/"
	legacyLedgerPrefix = "obj/"
)

// legacyEntry is a ledger entry as older versions wrote it.
type legacyEntry struct {
	Kind         string    `json:"kind"` // snapshot, vg, image
	Name         string    `json:"name"`
	ID           string    `json:"id,omitempty"`
	VMUUID       string    `json:"vm_uuid,omitempty"`
	VM           string    `json:"vm,omitempty"`
	InitiatorIQN string    `json:"initiator_iqn,omitempty"`
	Created      time.Time `json:"created"`
}

func migrateLegacyState(ctx context.Context, repo *engine.Repository, j *clusterjob.Journal) error {
	refs, err := repo.ListState(ctx, legacyRefPrefix)
	if err != nil {
		return fmt.Errorf("read references: %w", err)
	}
	for k, b := range refs {
		var r Reference
		if err := json.Unmarshal(b, &r); err != nil || r.VMUUID == "" {
			return fmt.Errorf("reference %s: undecodable", k)
		}
		if have, err := LoadReference(j, r.VMUUID); err != nil {
			return err
		} else if have == nil {
			if err := putRef(j, &r); err != nil {
				return err
			}
		}
		if err := repo.DeleteState(ctx, k); err != nil {
			return err
		}
	}
	ledger, err := repo.ListState(ctx, legacyLedgerPrefix)
	if err != nil {
		return fmt.Errorf("read the ledger: %w", err)
	}
	keys := make([]string, 0, len(ledger))
	for k := range ledger {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var objs []clusterjob.Object
	for _, k := range keys {
		var e legacyEntry
		if err := json.Unmarshal(ledger[k], &e); err != nil || e.Kind == "" || e.Name == "" {
			return fmt.Errorf("ledger entry %s: undecodable", k)
		}
		o := clusterjob.Object{Name: e.Name, ID: e.ID, VMUUID: e.VMUUID, VM: e.VM, Created: e.Created}
		switch e.Kind {
		case "snapshot":
			o.Kind = clusterjob.KindSnapshot
		case "vg":
			o.Kind = clusterjob.KindVolumeGroup
			if e.InitiatorIQN != "" && e.ID != "" {
				objs = append(objs, clusterjob.Object{Kind: clusterjob.KindAttachment, Name: e.Name + " " + e.InitiatorIQN,
					VolumeGroup: e.ID, Initiator: e.InitiatorIQN, Created: e.Created})
			}
		case "image":
			o.Kind = clusterjob.KindImage
			o.API = nutanix.APIV3 // images were only made by the v3 REST path
		default:
			return fmt.Errorf("ledger entry %s: unknown kind %q", k, e.Kind)
		}
		objs = append(objs, o)
	}
	if err := j.Adopt("backup-legacy", objs); err != nil {
		return err
	}
	for _, k := range keys {
		if err := repo.DeleteState(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

package prismsim

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- volume groups ----------

type vgDiskSpec struct {
	Index         int // -1: position
	Size          int64
	SourceKind    string // "" (blank), snapshot_disk, vm_disk, file
	SourceUUID    string
	SourceFile    string
	ContainerUUID string // "": the cluster's container
}

var iqnUnsafe = regexp.MustCompile(`[^a-z0-9.-]+`)

func (s *Sim) createVGLocked(name, desc, clusterUUID, usage, api string, disks []vgDiskSpec) (*volumeGroup, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errInvalid("volume group name is required")
	}
	cl := s.m.clusterByUUID(clusterUUID)
	if clusterUUID == "" {
		cl = s.m.Clusters[1]
	}
	if cl == nil || cl.PC {
		return nil, errInvalid("cluster %s is not an AHV cluster managed here", clusterUUID)
	}
	if usage == "" {
		usage = "USER"
	}
	g := &volumeGroup{UUID: simkit.NewUUID(), Name: name, Description: desc, ClusterUUID: cl.UUID, UsageType: usage,
		Created: time.Now(), Version: 1, API: api, Clients: []string{}}
	g.TargetName = "iqn.2010-06.com.nutanix:" + strings.Trim(iqnUnsafe.ReplaceAllString(strings.ToLower(name), "-"), "-") + "-" + g.UUID
	dir := filepath.Join("vgs", g.UUID)
	ctr := s.m.containerFor(cl.UUID)
	for i, ds := range disks {
		var src string
		var srcSize int64
		switch ds.SourceKind {
		case "":
		case "snapshot_disk":
			_, sd := s.m.diskRP(ds.SourceUUID)
			if sd == nil {
				return nil, errNotFound("disk recovery point %s not found", ds.SourceUUID)
			}
			src, srcSize = s.abs(sd.File), sd.Size
		case "vm_disk":
			f, sz, ok := s.m.diskFileByUUID(ds.SourceUUID)
			if !ok {
				return nil, errNotFound("vm disk %s not found", ds.SourceUUID)
			}
			src, srcSize = s.abs(f), sz
		case "file":
			src = ds.SourceFile
			sz, err := fileSize(src)
			if err != nil {
				return nil, errNotFound("clone source: %v", err)
			}
			srcSize = sz
		default:
			return nil, errInvalid("unsupported disk source %q", ds.SourceKind)
		}
		size := max(ds.Size, srcSize)
		if size <= 0 {
			return nil, errInvalid("disk %d needs a size or a source", i)
		}
		idx := ds.Index
		if idx < 0 {
			idx = i
		}
		dctr := ctr
		if ds.ContainerUUID != "" {
			if dctr = s.m.containerByUUID(ds.ContainerUUID); dctr == nil || dctr.ClusterUUID != cl.UUID {
				return nil, errNotFound("storage container %s not found on cluster %s", ds.ContainerUUID, cl.Name)
			}
		}
		d := &vgDisk{UUID: simkit.NewUUID(), Index: idx, Size: size, File: filepath.Join(dir, fmt.Sprintf("disk-%d.raw", i)),
			ContainerUUID: dctr.UUID, SourceKind: ds.SourceKind, SourceUUID: ds.SourceUUID}
		var err error
		if src == "" {
			err = simkit.BlankDisk(s.abs(d.File), size)
		} else {
			err = copyDisk(s.abs(d.File), src, size)
		}
		if err != nil {
			os.RemoveAll(s.abs(dir))
			return nil, err
		}
		g.Disks = append(g.Disks, d)
	}
	s.m.VGs[g.UUID] = g
	return g, nil
}

// exportVGLocked makes the iSCSI target of g match its attached clients.
func (s *Sim) exportVGLocked(g *volumeGroup) error {
	if s.tgt == nil {
		return nil
	}
	var luns, acl []string
	var accts []chapAccount
	for _, d := range g.Disks {
		luns = append(luns, s.abs(d.File))
	}
	for _, id := range g.Clients {
		c := s.m.ISCSIClients[id]
		if c == nil {
			continue
		}
		if c.IQN != "" {
			acl = append(acl, c.IQN)
			if c.Secret != "" {
				accts = append(accts, chapAccount{c.IQN, c.Secret})
			}
		} else if c.IP != "" {
			acl = append(acl, c.IP)
		}
	}
	return s.tgt.sync(g.TargetName, luns, acl, accts)
}

func (s *Sim) attachClientLocked(g *volumeGroup, iqn, ip, secret string) (*iscsiClient, error) {
	if iqn == "" && ip == "" {
		return nil, errInvalid("an iSCSI initiator name or address is required")
	}
	var c *iscsiClient
	for _, x := range s.m.ISCSIClients {
		if (iqn != "" && x.IQN == iqn) || (iqn == "" && ip != "" && x.IP == ip) {
			c = x
			break
		}
	}
	if c == nil {
		c = &iscsiClient{UUID: simkit.NewUUID(), IQN: iqn, IP: ip}
		s.m.ISCSIClients[c.UUID] = c
	}
	if secret != "" {
		c.Secret = secret
	}
	found := false
	for _, id := range g.Clients {
		if id == c.UUID {
			found = true
		}
	}
	if !found {
		g.Clients = append(g.Clients, c.UUID)
	}
	g.Version++
	if err := s.exportVGLocked(g); err != nil {
		return nil, fmt.Errorf("export %s: %w", g.TargetName, err)
	}
	return c, nil
}

func (s *Sim) detachClientLocked(g *volumeGroup, clientUUID string) error {
	out := g.Clients[:0]
	found := false
	for _, id := range g.Clients {
		if id == clientUUID {
			found = true
			continue
		}
		out = append(out, id)
	}
	if !found {
		return errNotFound("iSCSI client %s is not attached to volume group %s", clientUUID, g.UUID)
	}
	g.Clients = out
	g.Version++
	return s.exportVGLocked(g)
}

func (s *Sim) deleteVGLocked(g *volumeGroup) error {
	g.Clients = nil
	err := s.exportVGLocked(g)
	delete(s.m.VGs, g.UUID)
	for _, d := range g.Disks {
		os.Remove(s.abs(d.File))
		os.Remove(filepath.Dir(s.abs(d.File)))
	}
	os.Remove(s.abs(filepath.Join("vgs", g.UUID)))
	return err
}

// VolumeGroupDiskFiles returns the backing files of a volume group's disks
// (by uuid or name), so tests can compare what an initiator wrote.
func (s *Sim) VolumeGroupDiskFiles(nameOrUUID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.m.VGs[nameOrUUID]
	if g == nil {
		for _, x := range s.m.VGs {
			if x.Name == nameOrUUID {
				g = x
			}
		}
	}
	if g == nil {
		return nil, fmt.Errorf("volume group %s: %w", nameOrUUID, ErrNotFound)
	}
	var out []string
	for _, d := range g.Disks {
		out = append(out, s.abs(d.File))
	}
	return out, nil
}

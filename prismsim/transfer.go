package prismsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Files into a running guest (vmm v4.3 transfer-files-to-guest, API notes
// §9a): the simulator reads the source disk from the external repository
// with its NFS client, finds each file in one of the disk's ext2/3/4
// filesystems and writes it into the target VM's first ext4 filesystem
// on disk 0, with e2fsprogs' debugfs (no mount, no root). The guest's
// credentials are in StateDir/guest.credentials (user line, password
// line); the VM must be powered on with guest tools installed.

const minTransferRevision = "v4.3"

// GuestCredentialsFile holds the simulated guests' user and password, one
// per line (the format of ahvfs restore-file --guest-credentials-file).
func (s *Sim) GuestCredentialsFile() string { return filepath.Join(s.dir, "guest.credentials") }

// initGuestCredentials keeps the guests' credentials, made once.
func (s *Sim) initGuestCredentials() error {
	f := s.GuestCredentialsFile()
	if b, err := os.ReadFile(f); err == nil && len(strings.Fields(string(b))) == 2 {
		return nil
	}
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("prismsim: %w", err)
	}
	if err := os.WriteFile(f, []byte("root\nGuest-"+hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		return fmt.Errorf("prismsim: write guest credentials: %w", err)
	}
	return nil
}

func (s *Sim) guestCredentials() (user, password string, err error) {
	b, err := os.ReadFile(s.GuestCredentialsFile())
	if err != nil {
		return "", "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 {
		return "", "", errors.New("guest.credentials: want a user line and a password line")
	}
	return lines[0], lines[1], nil
}

type v4TransferIn struct {
	ObjectType          string `json:"$objectType"`
	AuthDiscriminator   string `json:"$guestAuthenticationItemDiscriminator"`
	SpecDiscriminator   string `json:"$transferFilesSpecItemDiscriminator"`
	GuestAuthentication *struct {
		ObjectType string `json:"$objectType"`
		Username   string `json:"username"`
		Password   string `json:"password"`
	} `json:"guestAuthentication"`
	TransferFilesSpec *struct {
		ObjectType string `json:"$objectType"`
		Ref        *struct {
			RepoID string `json:"externalRepositoryExtId"`
			Path   string `json:"externalDiskRelativePath"`
		} `json:"externalDataSourceDiskReference"`
		Files []v4TransferFile `json:"filesToTransfer"`
	} `json:"transferFilesSpec"`
}

// v4TransferFile is one of filesToTransfer.
type v4TransferFile struct {
	Source      string `json:"sourcePath"`
	Destination string `json:"destinationPath"`
	Overwrite   bool   `json:"shouldOverwrite"`
}

func (s *Sim) routesTransfer(mux *http.ServeMux) {
	s.v4(mux, "POST", "vmm", "ahv/config/vms/{extId}/$actions/transfer-files-to-guest",
		"vmm.v4.ahv.config.TransferFilesToGuestApiResponse", s.v4TransferFiles)
}

func (s *Sim) v4TransferFiles(w http.ResponseWriter, r *http.Request) {
	if rev := r.PathValue("rev"); !revisionAtLeast(rev, minTransferRevision) {
		v4Error(w, r, http.StatusNotFound, "API revision "+rev+" does not serve transfer-files-to-guest (from "+minTransferRevision+")")
		return
	}
	var in v4TransferIn
	if !s.decodeV4(w, r, &in) {
		return
	}
	spec := in.TransferFilesSpec
	switch {
	case in.ObjectType != "vmm.v4.ahv.config.TransferFilesToGuestSpec":
		v4Error(w, r, http.StatusBadRequest, "the body must be a vmm.v4.ahv.config.TransferFilesToGuestSpec")
		return
	case in.AuthDiscriminator != "vmm.v4.ahv.config.Credential" || in.SpecDiscriminator != "vmm.v4.ahv.config.TransferFilesFromExternalDataSourceDisk":
		v4Error(w, r, http.StatusBadRequest, "$guestAuthenticationItemDiscriminator and $transferFilesSpecItemDiscriminator must name the types of guestAuthentication and transferFilesSpec")
		return
	case in.GuestAuthentication == nil || !strings.HasSuffix(in.GuestAuthentication.ObjectType, ".Credential"):
		v4Error(w, r, http.StatusBadRequest, "guestAuthentication must be a vmm.v4.ahv.config.Credential")
		return
	case spec == nil || !strings.HasSuffix(spec.ObjectType, ".TransferFilesFromExternalDataSourceDisk"):
		v4Error(w, r, http.StatusBadRequest, "the simulator serves transferFilesSpec of type vmm.v4.ahv.config.TransferFilesFromExternalDataSourceDisk")
		return
	case spec.Ref == nil || spec.Ref.RepoID == "" || spec.Ref.Path == "":
		v4Error(w, r, http.StatusBadRequest, "externalDataSourceDiskReference needs externalRepositoryExtId and externalDiskRelativePath")
		return
	case len(spec.Files) == 0:
		v4Error(w, r, http.StatusBadRequest, "filesToTransfer is empty")
		return
	}
	for _, f := range spec.Files {
		if f.Source == "" || !strings.HasPrefix(f.Destination, "/") {
			v4Error(w, r, http.StatusBadRequest, "each file needs a sourcePath and an absolute destinationPath")
			return
		}
	}
	withPath(s, w, r, "extId", v4NotFound, byID(s.m.VMs), func(v *vm) {
		if r.Header.Get("If-Match") != "" && !checkIfMatch(w, r, vmETag(v)) {
			return
		}
		x := s.m.ExternalRepos[spec.Ref.RepoID]
		if x == nil {
			v4Error(w, r, http.StatusNotFound, "external repository "+spec.Ref.RepoID+" not found")
			return
		}
		fail := s.taskFailure("TransferFilesToGuest")
		switch {
		case v.PowerState != "ON":
			fail = "VM " + v.Name + " must be powered on to receive files"
		case v.NGT == NGTAbsent || v.NGT == "":
			fail = "VM " + v.Name + " has no Nutanix Guest Tools: files cannot be transferred into it"
		case len(v.Disks) == 0 || v.Disks[0].DeviceType == "CDROM":
			fail = "VM " + v.Name + " has no disk to write to"
		case v.Disks[0].External != nil:
			fail = "the simulator does not write into a disk that is still hydrating"
		}
		user, pass, err := s.guestCredentials()
		if fail == "" && (err != nil || user != in.GuestAuthentication.Username || pass != in.GuestAuthentication.Password) {
			fail = "guest authentication failed for user " + in.GuestAuthentication.Username
		}
		repo := *x
		target := s.abs(v.Disks[0].File)
		files := spec.Files
		work := func() error {
			return s.transferFiles(&repo, spec.Ref.Path, target, files)
		}
		t := s.startWorkTask("TransferFilesToGuest", v.ClusterUUID, []taskEntity{{Kind: "vm", UUID: v.UUID, Name: v.Name}}, fail, work, nil)
		s.accepted(w, r, "vmm.v4.ahv.config.TransferFilesToGuestApiResponse", t)
	})
}

// transferFiles copies each file out of the source disk into the target
// disk image.
func (s *Sim) transferFiles(x *externalRepo, rel, target string, files []v4TransferFile) error {
	// debugfs -w on an image another transfer writes would corrupt it.
	s.transferMu.Lock()
	defer s.transferMu.Unlock()
	tmp, err := os.MkdirTemp("", "prismsim-transfer-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src, err := openNFSSource(x, rel)
	if err != nil {
		return err
	}
	img := filepath.Join(tmp, "source.raw")
	err = copySourceDisk(s.ctx, src, img)
	src.Close()
	if err != nil {
		return fmt.Errorf("read %s from the external repository: %w", rel, err)
	}
	srcFS, err := ext4Filesystems(img)
	if err != nil {
		return err
	}
	dstFS, err := ext4Filesystems(target)
	if err != nil || len(dstFS) == 0 {
		return fmt.Errorf("the guest's disk 0 holds no ext4 filesystem to write to")
	}
	dst := dstFS[0]
	for i, f := range files {
		out := filepath.Join(tmp, fmt.Sprintf("file-%d", i))
		found := false
		for _, fsys := range srcFS {
			if _, err := debugfs(fsys, false, "dump "+quoteDebugfs(f.Source)+" "+quoteDebugfs(out)); err == nil {
				if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
					found = true
					break
				}
			}
		}
		if !found {
			return fmt.Errorf("%s: no such file in %s", f.Source, rel)
		}
		if err := writeGuestFile(dst, out, f.Destination, f.Overwrite); err != nil {
			return err
		}
	}
	return nil
}

// copySourceDisk copies src to a sparse file (until ctx, the simulator's
// life, ends).
func copySourceDisk(ctx context.Context, src *nfsSource, to string) error {
	f, err := os.Create(to)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(src.size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); off < src.size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), src.size-off)
		if _, err := src.ReadAt(buf[:n], off); err != nil {
			return err
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
	}
	return f.Close()
}

// ext4Filesystems are debugfs's names for the ext2/3/4 filesystems of a
// disk image: each partition's (image?offset=N) or the whole image's.
func ext4Filesystems(img string) ([]string, error) {
	var cands []string
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err == nil {
		var t struct {
			PartitionTable struct {
				SectorSize int `json:"sectorsize"`
				Partitions []struct {
					Start int64 `json:"start"`
				} `json:"partitions"`
			} `json:"partitiontable"`
		}
		if json.Unmarshal(out, &t) == nil {
			ss := int64(max(t.PartitionTable.SectorSize, 512))
			for _, p := range t.PartitionTable.Partitions {
				cands = append(cands, fmt.Sprintf("%s?offset=%d", img, p.Start*ss))
			}
		}
	}
	cands = append(cands, img)
	var fss []string
	for _, c := range cands {
		if _, err := debugfs(c, false, "stats -h"); err == nil {
			fss = append(fss, c)
		}
	}
	return fss, nil
}

// writeGuestFile writes local file from to path dest of the filesystem
// fsys, making its directories.
func writeGuestFile(fsys, from, dest string, overwrite bool) error {
	dir := path.Dir(dest)
	var made string
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		if c == "" {
			continue
		}
		made += "/" + c
		debugfs(fsys, true, "mkdir "+quoteDebugfs(made)) // an existing one fails: fine
	}
	if _, err := debugfs(fsys, false, "stat "+quoteDebugfs(dest)); err == nil {
		if !overwrite {
			return fmt.Errorf("%s exists in the guest (shouldOverwrite is false)", dest)
		}
		if _, err := debugfs(fsys, true, "rm "+quoteDebugfs(dest)); err != nil {
			return fmt.Errorf("replace %s in the guest: %w", dest, err)
		}
	}
	if _, err := debugfs(fsys, true, "write "+quoteDebugfs(from)+" "+quoteDebugfs(dest)); err != nil {
		return fmt.Errorf("write %s in the guest: %w", dest, err)
	}
	if _, err := debugfs(fsys, false, "stat "+quoteDebugfs(dest)); err != nil {
		return fmt.Errorf("write %s in the guest: not there afterwards", dest)
	}
	return nil
}

// debugfs runs one debugfs request on fsys (writable with -w). debugfs
// exits 0 even when the request fails; its messages on stderr say so.
func debugfs(fsys string, writable bool, request string) (string, error) {
	args := []string{"-R", request}
	if writable {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command("debugfs", append(args, fsys)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	// The first line is debugfs's banner.
	if _, rest, ok := strings.Cut(msg, "\n"); ok {
		msg = strings.TrimSpace(rest)
	} else if strings.HasPrefix(msg, "debugfs ") {
		msg = ""
	}
	if err == nil && msg != "" {
		err = errors.New(msg)
	}
	if err != nil {
		return "", fmt.Errorf("debugfs %q on %s: %w", request, fsys, err)
	}
	return stdout.String(), nil
}

// quoteDebugfs quotes an argument for debugfs's request parser, where a
// quote inside quotes is written twice.
func quoteDebugfs(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

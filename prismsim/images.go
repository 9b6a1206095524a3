package prismsim

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- images: the model and the file transfers of every API ----------

type imageIn struct {
	Name        string
	Description string
	Type        string
	SourceURI   string
	SourceKind  string // "", vm_disk
	SourceUUID  string
	ClusterUUID string
}

// createImageLocked creates an image; a data source is copied now.
func (s *Sim) createImageLocked(in imageIn) (*image, error) {
	if in.Name == "" {
		return nil, errInvalid("image name is required")
	}
	typ := in.Type
	if typ == "" {
		typ = "DISK_IMAGE"
	}
	if typ != "DISK_IMAGE" && typ != "ISO_IMAGE" {
		return nil, errInvalid("image_type %q is not DISK_IMAGE or ISO_IMAGE", typ)
	}
	cu := in.ClusterUUID
	if cu == "" || s.m.clusterByUUID(cu) == nil || s.m.clusterByUUID(cu).PC {
		cu = s.m.Clusters[1].UUID
	}
	im := &image{UUID: simkit.NewUUID(), Name: in.Name, Description: in.Description, Type: typ, State: "PENDING",
		ClusterUUID: cu, Created: time.Now(), SourceURI: in.SourceURI}
	im.File = filepath.Join("images", im.UUID+".raw")
	switch {
	case in.SourceKind == "vm_disk":
		f, _, ok := s.m.diskFileByUUID(in.SourceUUID)
		if !ok {
			return nil, errNotFound("vm disk %s not found", in.SourceUUID)
		}
		if err := copyDisk(s.abs(im.File), s.abs(f), 0); err != nil {
			return nil, err
		}
		im.Uploaded = true
	case in.SourceKind != "":
		return nil, errInvalid("data_source_reference kind %q is not supported (vm_disk)", in.SourceKind)
	case strings.HasPrefix(in.SourceURI, "nfs://"):
		// As on AOS, the image service imports a vDisk of the cluster's own
		// containers by its NFS path, snapshot vDisks included
		// (nfs://127.0.0.1/<container>/.snapshot/.../<vdisk uuid>).
		u, err := url.Parse(in.SourceURI)
		if err != nil {
			return nil, errInvalid("source_uri: %v", err)
		}
		_, sd := s.m.snapDiskByPath(u.Path)
		if sd == nil {
			return nil, errNotFound("source_uri %q: no snapshot vDisk at %s", in.SourceURI, u.Path)
		}
		if err := copyDisk(s.abs(im.File), s.abs(sd.File), 0); err != nil {
			return nil, err
		}
		im.Uploaded = true
	case strings.HasPrefix(in.SourceURI, "file://"):
		if err := copyDisk(s.abs(im.File), strings.TrimPrefix(in.SourceURI, "file://"), 0); err != nil {
			return nil, errInvalid("source_uri: %v", err)
		}
		im.Uploaded = true
	case in.SourceURI != "":
		return nil, errInvalid("source_uri %q: the simulator fetches file:// URIs only; upload with PUT /images/{uuid}/file", in.SourceURI)
	}
	if im.Uploaded {
		sz, _ := fileSize(s.abs(im.File))
		im.Size = sz
	}
	s.m.Images[im.UUID] = im
	return im, nil
}

// createImageTaskLocked creates the image now, unless op's task is chosen to
// fail (then nothing is created and the task names a fresh uuid, id), and
// starts op's task, whose success marks the image COMPLETE. The caller holds
// s.mu.
func (s *Sim) createImageTaskLocked(op string, ii imageIn) (t *task, id string, err error) {
	fail := s.taskFailure(op)
	id = simkit.NewUUID()
	var im *image
	if fail == "" {
		if im, err = s.createImageLocked(ii); err != nil {
			return nil, "", err
		}
		id = im.UUID
	}
	t = s.startTask(op, ii.ClusterUUID, []taskEntity{{Kind: "image", UUID: id, Name: ii.Name}}, fail, func() {
		if im != nil {
			im.State = "COMPLETE"
		}
	})
	return t, id, nil
}

// imageUpload serves PUT /images/{uuid}/file (v3): the body is the image.
func (s *Sim) imageUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("uuid")
	s.mu.Lock()
	im := s.m.Images[id]
	if im == nil {
		s.mu.Unlock()
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if im.Uploaded {
		s.mu.Unlock()
		s.apiError(w, r, http.StatusConflict, "ENTITY_IS_READONLY", "Image "+id+" already has data; an uploaded image cannot be changed")
		return
	}
	dst := s.abs(im.File)
	s.mu.Unlock()

	var h hash.Hash
	switch strings.ToUpper(r.Header.Get("X-Nutanix-Checksum-Type")) {
	case "":
	case "SHA_1", "SHA1":
		h = sha1.New()
	case "SHA_256", "SHA256":
		h = sha256.New()
	default:
		s.apiError(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "unsupported X-Nutanix-Checksum-Type")
		return
	}
	tmp := dst + ".upload"
	f, err := os.Create(tmp)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	var dstW io.Writer = &sparseWriter{f: f}
	if h != nil {
		dstW = io.MultiWriter(dstW, h)
	}
	n, err := io.CopyBuffer(dstW, r.Body, make([]byte, 1<<20))
	if err == nil {
		err = f.Truncate(n)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		s.apiError(w, r, http.StatusBadRequest, "INVALID_REQUEST", "upload: "+err.Error())
		return
	}
	if h != nil {
		want := strings.ToLower(r.Header.Get("X-Nutanix-Checksum-Bytes"))
		if got := hex.EncodeToString(h.Sum(nil)); want != got {
			os.Remove(tmp)
			s.apiError(w, r, http.StatusBadRequest, "INVALID_ARGUMENT", "checksum mismatch: got "+got+", header says "+want)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m.Images[id] == nil {
		os.Remove(tmp)
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if err := os.Rename(tmp, dst); err != nil {
		s.writeErr(w, r, err)
		return
	}
	im.Uploaded, im.Size, im.State = true, n, "COMPLETE"
	im.SpecVersion++
	s.save()
	w.WriteHeader(http.StatusOK)
}

// sparseWriter writes sequentially, leaving holes for all-zero 64 KiB blocks.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (sw *sparseWriter) Write(p []byte) (int, error) {
	n, err := simkit.WriteSparse(sw.f, p, sw.off)
	if err != nil {
		return n, err
	}
	sw.off += int64(n)
	return n, nil
}

// imageDownload serves GET /images/{uuid}/file with Range support.
func (s *Sim) imageDownload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("uuid")
	if id == "" {
		id = r.PathValue("extId")
	}
	s.mu.Lock()
	im := s.m.Images[id]
	var path string
	var mod time.Time
	if im != nil && im.Uploaded {
		path, mod = s.abs(im.File), im.Created
	}
	s.mu.Unlock()
	if im == nil {
		s.notFound(w, r, "Image "+id+" not found")
		return
	}
	if path == "" {
		s.apiError(w, r, http.StatusConflict, "ENTITY_NOT_CONFIGURED", "Image "+id+" has no data yet")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", mod, f)
}

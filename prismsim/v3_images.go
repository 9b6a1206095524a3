package prismsim

import (
	"cmp"
	"net/http"
	"os"

	"github.com/ahvfs/ahvfs/internal/simkit"
)

// ---------- images ----------

func (s *Sim) v3Image(im *image) obj {
	c := s.m.clusterByUUID(im.ClusterUUID)
	specRes := obj{"image_type": im.Type}
	if im.SourceURI != "" {
		specRes["source_uri"] = im.SourceURI
	}
	statusRes := obj{"image_type": im.Type, "size_bytes": im.Size,
		"retrieval_uri_list":             []string{s.url + v3Prefix + "/images/" + im.UUID + "/file"},
		"current_cluster_reference_list": []obj{ref("cluster", c.UUID, c.Name)}}
	if im.SourceURI != "" {
		statusRes["source_uri"] = im.SourceURI
	}
	spec := obj{"name": im.Name, "resources": specRes}
	status := obj{"name": im.Name, "state": im.State, "resources": statusRes}
	if im.Description != "" {
		spec["description"] = im.Description
		status["description"] = im.Description
	}
	return obj{"api_version": "3.1", "metadata": v3Meta("image", im.UUID, im.SpecVersion, im.Created, im.Created),
		"spec": spec, "status": status}
}

func (s *Sim) v3CreateImage(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Spec *struct {
			Name        string `json:"name"`
			Description string `json:"description"`
			Resources   struct {
				ImageType               string  `json:"image_type"`
				SourceURI               string  `json:"source_uri"`
				DataSourceReference     *v3Ref  `json:"data_source_reference"`
				InitialPlacementRefList []v3Ref `json:"initial_placement_ref_list"`
			} `json:"resources"`
		} `json:"spec"`
	}
	if !s.decodeJSON(w, r, &in, true) {
		return
	}
	if in.Spec == nil {
		v3Error(w, http.StatusUnprocessableEntity, "image", "VALIDATION_ERROR", "spec is a required property")
		return
	}
	ii := imageIn{Name: in.Spec.Name, Description: in.Spec.Description, Type: in.Spec.Resources.ImageType,
		SourceURI: in.Spec.Resources.SourceURI}
	if d := in.Spec.Resources.DataSourceReference; d != nil {
		ii.SourceKind, ii.SourceUUID = d.Kind, d.UUID
	}
	if l := in.Spec.Resources.InitialPlacementRefList; len(l) > 0 {
		ii.ClusterUUID = l[0].UUID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, id, err := s.createImageTaskLocked("ImageCreate", ii)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.save()
	spec := obj{"name": ii.Name, "resources": obj{"image_type": cmp.Or(ii.Type, "DISK_IMAGE")}}
	v3Accepted(w, obj{"kind": "image", "uuid": id, "spec_version": 0}, spec, t, "PENDING")
}

func (s *Sim) v3GetImage(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Image %s not found", byID(s.m.Images), func(im *image) {
		simkit.WriteJSON(w, http.StatusOK, s.v3Image(im))
	})
}

func (s *Sim) v3ListImages(w http.ResponseWriter, r *http.Request) {
	v3List(s, w, r, "image", func(listReq) []*image { return s.m.sortedImages() }, func(im *image, k string) string {
		if k == "name" {
			return im.Name
		}
		return ""
	}, s.v3Image)
}

func (s *Sim) v3DeleteImage(w http.ResponseWriter, r *http.Request) {
	withPath(s, w, r, "uuid", "Image %s not found", byID(s.m.Images), func(im *image) {
		t := s.startTask("ImageDelete", im.ClusterUUID, []taskEntity{{Kind: "image", UUID: im.UUID, Name: im.Name}},
			s.taskFailure("ImageDelete"), func() {
				delete(s.m.Images, im.UUID)
				os.Remove(s.abs(im.File))
			})
		v3Accepted(w, obj{"kind": "image"}, nil, t, "DELETE_PENDING")
	})
}

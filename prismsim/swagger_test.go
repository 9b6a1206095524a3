package prismsim_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ahvfs/ahvfs/prismsim"
	"github.com/ahvfs/ahvfs/prismsim/internal/swagger"
	"github.com/ahvfs/ahvfs/prismsim/simtest"
)

// TestV3ResponsesMatchSwagger validates the simulator's v3 answers (vms/list,
// vms/{uuid}, clusters/list, subnets/list, tasks, images, vm_snapshots,
// changed_regions, error envelopes) against the Prism Element v3 swagger
// definitions, strictly: every property must be declared by the schema,
// except generation_uuid and bios_uuid in VM status resources, which the
// recorded pc.2024.3 responses carry although this swagger does not declare
// them.
func TestV3ResponsesMatchSwagger(t *testing.T) {
	doc, err := swagger.Load("testdata/v3-pe-swagger-subset.json")
	if err != nil {
		t.Fatal(err)
	}
	s := simtest.Start(t, simtest.Options{})
	a := newAPI(t, s)
	img := makeDisk(t, t.TempDir(), 16*blk, 2)
	v, err := s.AddVM(context.Background(), "sw", []string{img}, prismsim.VMOptions{NGT: prismsim.NGTVSS,
		Categories: map[string][]string{"Env": {"prod", "qa"}}}) // metadata.categories and categories_mapping are validated too
	if err != nil {
		t.Fatal(err)
	}
	imID := createImage(t, a, "sw-img", make([]byte, 4096))
	snap := v3Snapshot(t, a, v.UUID, "sw", "APPLICATION_CONSISTENT")
	path := str(snap, "status.snapshot_file_list[0].snapshot_file_path")
	task := a.do("POST", "/api/nutanix/v3/vm_snapshots", map[string]any{"spec": map[string]any{"name": "t", "resources": map[string]any{"entity_uuid": v.UUID}}}).must(t, 202)
	taskID := str(task.body, "status.execution_context.task_uuid")
	a.waitV3Task(taskID)

	cases := []struct {
		name, method, path string
		body               any
		code               int
		def                string
	}{
		{"vms/list", "POST", "/api/nutanix/v3/vms/list", map[string]any{"kind": "vm"}, 200, "vm_list_intent_response"},
		{"vms/{uuid}", "GET", "/api/nutanix/v3/vms/" + v.UUID, nil, 200, "vm_intent_response"},
		{"vms/{uuid} 404", "GET", "/api/nutanix/v3/vms/" + imID, nil, 404, "vm_status"},
		{"clusters/list", "POST", "/api/nutanix/v3/clusters/list", map[string]any{}, 200, "cluster_list_intent_response"},
		{"subnets/list", "POST", "/api/nutanix/v3/subnets/list", map[string]any{}, 200, "subnet_list_intent_response"},
		{"tasks/{uuid}", "GET", "/api/nutanix/v3/tasks/" + taskID, nil, 200, "task"},
		{"tasks/{uuid} 404", "GET", "/api/nutanix/v3/tasks/" + imID, nil, 404, "task_status"},
		{"images/{uuid}", "GET", "/api/nutanix/v3/images/" + imID, nil, 200, "image_intent_response"},
		{"images/list", "POST", "/api/nutanix/v3/images/list", map[string]any{}, 200, "image_list_intent_response"},
		{"vm_snapshots/{uuid}", "GET", "/api/nutanix/v3/vm_snapshots/" + str(snap, "metadata.uuid"), nil, 200, "vm_snapshot_intent_response"},
		{"vm_snapshots/list", "POST", "/api/nutanix/v3/vm_snapshots/list", map[string]any{}, 200, "vm_snapshot_list_intent_response"},
		{"changed_regions", "POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": path}, 200, "changed_regions"},
		{"changed_regions 400", "POST", "/api/nutanix/v3/data/changed_regions", map[string]any{"snapshot_file_path": "/x"}, 400, "changed_regions_status"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := a.do(c.method, c.path, c.body).must(t, c.code)
			var v any
			if err := json.Unmarshal(r.raw, &v); err != nil {
				t.Fatal(err)
			}
			extra := []string{"status.resources.generation_uuid", "status.resources.bios_uuid",
				"entities[].status.resources.generation_uuid", "entities[].status.resources.bios_uuid"}
			for _, e := range doc.Validate(c.def, v, swagger.Options{Strict: true, AllowExtra: extra}) {
				t.Errorf("%s: %s", c.def, e)
			}
		})
	}
}

// TestSwaggerValidatorCatchesMistakes: the validator is not vacuous.
func TestSwaggerValidatorCatchesMistakes(t *testing.T) {
	doc, err := swagger.Load("testdata/v3-pe-swagger-subset.json")
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]any{"api_version": "3.1", "metadata": map[string]any{"kind": "vm", "total_matches": "3"},
		"entities": []any{map[string]any{"metadata": map[string]any{"kind": "vm", "uuid": "not-a-uuid"},
			"status": map[string]any{"name": "x", "resources": map[string]any{"power_stat": "ON", "memory_size_mib": 1.5}}}}}
	errs := doc.Validate("vm_list_intent_response", bad, swagger.Options{Strict: true})
	if len(errs) < 4 {
		t.Errorf("want >= 4 violations (string total_matches, bad uuid, unknown power_stat, non-integer memory), got %v", errs)
	}
	task := map[string]any{"uuid": "0e09cf83-ac68-4f28-af70-000000000000", "status": "DONE"}
	if errs := doc.Validate("task", task, swagger.Options{}); len(errs) != 1 {
		t.Errorf("enum: %v", errs)
	}
}

package clusterjob

import (
	"strings"

	"github.com/ahvfs/ahvfs/nutanix"
)

// InstantMark ends the description of a VM an instant restore created,
// before the name of the external repository it was created on. Once the
// disks are hydrated the cluster drops their data sources; the mark still
// says which repository the VM belongs with.
const InstantMark = "; instant, external repository "

// RepositoriesOf are the external repositories v reads or read from: its
// disks' data sources (by ID) and its description's (by name).
func RepositoriesOf(v nutanix.VM) map[string]bool {
	repos := map[string]bool{}
	for _, d := range v.Disks {
		if d.External != nil {
			repos[d.External.RepositoryID] = true
		}
	}
	if i := strings.LastIndex(v.Description, InstantMark); i >= 0 {
		repos[v.Description[i+len(InstantMark):]] = true
	}
	return repos
}

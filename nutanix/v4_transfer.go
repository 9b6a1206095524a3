package nutanix

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Files into a running guest (vmm v4.3, API notes §9a, "Related"): the
// cluster copies files out of a disk file on an external repository into
// the VM through Nutanix Guest Tools, logging in with the guest's
// credentials.

// GuestCredential logs the cluster in to the guest. Its String never
// shows the password.
type GuestCredential struct {
	Username string
	Password string
}

func (c GuestCredential) String() string { return c.Username + ":<redacted>" }

// GuestFile is one file to copy: Source inside the source disk's
// filesystem (no drive letter), Destination the full path in the guest.
type GuestFile struct {
	Source      string
	Destination string
	Overwrite   bool
}

// GuestFileTransfer copies files from a disk file on an external
// repository into a running guest. *Client implements it; it answers
// ErrUnsupported without vmm v4.3 and multidomain v4.2.
type GuestFileTransfer interface {
	// TransferFilesToGuest copies files from the disk file diskPath
	// (relative to the repository's export) of external repository
	// repoID into VM vmID, and waits for the task.
	TransferFilesToGuest(ctx context.Context, vmID string, cred GuestCredential, repoID, diskPath string, files []GuestFile) error
}

var _ GuestFileTransfer = (*Client)(nil)

// minTransferRevision is the vmm revision of transfer-files-to-guest.
const minTransferRevision = "v4.3"

func (c *Client) TransferFilesToGuest(ctx context.Context, vmID string, cred GuestCredential, repoID, diskPath string, files []GuestFile) error {
	op := fmt.Sprintf("transfer %d file(s) to VM %s", len(files), vmID)
	b, err := c.instant(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if rev := b.rev["vmm"]; revisionLess(rev, minTransferRevision) {
		return fmt.Errorf("%s: copying files into a guest needs vmm %s or later (here: %s): %w", op, minTransferRevision, rev, ErrUnsupported)
	}
	if len(files) == 0 || cred.Username == "" || repoID == "" || diskPath == "" {
		return fmt.Errorf("%s: files, guest credentials, repository and disk path are required", op)
	}
	var list []any
	for _, f := range files {
		list = append(list, map[string]any{"$objectType": "vmm.v4.ahv.config.TransferFileAttributes",
			"sourcePath": f.Source, "destinationPath": f.Destination, "shouldOverwrite": f.Overwrite})
	}
	body := map[string]any{
		"$objectType":                           "vmm.v4.ahv.config.TransferFilesToGuestSpec",
		"$guestAuthenticationItemDiscriminator": "vmm.v4.ahv.config.Credential",
		"guestAuthentication": map[string]any{"$objectType": "vmm.v4.ahv.config.Credential",
			"username": cred.Username, "password": cred.Password},
		"$transferFilesSpecItemDiscriminator": "vmm.v4.ahv.config.TransferFilesFromExternalDataSourceDisk",
		"transferFilesSpec": map[string]any{
			"$objectType": "vmm.v4.ahv.config.TransferFilesFromExternalDataSourceDisk",
			"externalDataSourceDiskReference": map[string]any{
				"$objectType":             "vmm.v4.ahv.config.TransferFilesExternalDataSourceDiskReference",
				"externalRepositoryExtId": repoID, "externalDiskRelativePath": diskPath},
			"filesToTransfer": list,
		},
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost,
		path: b.p("vmm", "/ahv/config/vms/"+url.PathEscape(vmID)+"/$actions/transfer-files-to-guest"), in: body})
	return err
}

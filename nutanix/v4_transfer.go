package nutanix

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
)

// Files into a running guest (vmm v4.3, API notes §9a, "Related"): the
// cluster copies files out of a disk file on an external repository into
// the VM through Nutanix Guest Tools, logging in with the guest's
// credentials.

// GuestCredential logs the cluster in to the guest. It never shows the
// password: not in String, GoString, slog or JSON.
type GuestCredential struct {
	Username string `json:"username"`
	Password string `json:"-"`
}

func (c GuestCredential) String() string       { return c.Username + ":<redacted>" }
func (c GuestCredential) GoString() string     { return "nutanix.GuestCredential{" + c.String() + "}" }
func (c GuestCredential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// GuestFile is one file to copy: Source inside the source disk's
// filesystem (no drive letter), Destination the full path in the guest.
type GuestFile struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Overwrite   bool   `json:"overwrite"`
}

// GuestFileTransfer copies files from a disk file on an external
// repository into a running guest. *Client implements it; it answers
// ErrUnsupported without vmm v4.3 and multidomain v4.2.
type GuestFileTransfer interface {
	// CheckGuestFileTransfer fails with ErrUnsupported, saying what is
	// missing, when the endpoint cannot copy files into guests.
	CheckGuestFileTransfer(ctx context.Context) error
	// TransferFilesToGuest copies files from the disk file diskPath
	// (relative to the repository's export) of external repository
	// repoID into VM vmID, and waits for the task.
	TransferFilesToGuest(ctx context.Context, vmID string, cred GuestCredential, repoID, diskPath string, files []GuestFile) error
}

var _ GuestFileTransfer = (*Client)(nil)

// minTransferRevision is the vmm revision of transfer-files-to-guest.
const minTransferRevision = "v4.3"

func (c *Client) CheckGuestFileTransfer(ctx context.Context) error {
	_, err := c.transfer(ctx)
	return err
}

// transfer returns the v4 backend when it serves transfer-files-to-guest.
func (c *Client) transfer(ctx context.Context) (*v4Backend, error) {
	return c.v4With(ctx, "copying files into a guest", [][2]string{{"vmm", minTransferRevision}, {"multidomain", minInstantRevision}})
}

func (c *Client) TransferFilesToGuest(ctx context.Context, vmID string, cred GuestCredential, repoID, diskPath string, files []GuestFile) error {
	op := fmt.Sprintf("transfer %d file(s) to VM %s", len(files), vmID)
	b, err := c.transfer(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
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
	// The VM's ETag goes with the action, as with every other VM action.
	p := b.p("vmm", "/ahv/config/vms/"+url.PathEscape(vmID))
	tag, err := b.etag(ctx, p)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err = b.mutate(ctx, op, request{method: http.MethodPost, path: p + "/$actions/transfer-files-to-guest", in: body, header: ifMatch(tag)})
	return err
}

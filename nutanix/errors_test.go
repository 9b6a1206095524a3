package nutanix_test

import (
	"errors"
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
)

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		status                int
		body                  string
		code, reason, message string
		sentinel              error
	}{
		{"v3 envelope", 404, `{"api_version":"3.1","code":404,"kind":"vm","state":"ERROR","message_list":[{"message":"VM abc not found","reason":"ENTITY_NOT_FOUND"}]}`,
			"", "ENTITY_NOT_FOUND", "VM abc not found", nutanix.ErrNotFound},
		{"v3 status envelope", 400, `{"status":{"state":"ERROR","message_list":[{"message":"kInvalidValue: Snapshot file pathname is not valid","reason":"ENTITY_NOT_FOUND"}]}}`,
			"", "ENTITY_NOT_FOUND", "kInvalidValue: Snapshot file pathname is not valid", nutanix.ErrNotFound},
		{"v2", 500, `{"message":"Volume group not found","error_code":{"code":1202},"detail":""}`, "", "", "Volume group not found", nil},
		{"v2 flat code", 409, `{"message":"logical timestamp mismatch","error_code":1201}`, "1201", "", "logical timestamp mismatch", nutanix.ErrConflict},
		{"v4 app message", 404, `{"data":{"error":[{"$objectType":"vmm.v4.error.AppMessage","message":"Failed to perform the operation as the backend service could not find the entity.","severity":"ERROR","code":"VMM-20005","locale":"en_US"}],"$objectType":"vmm.v4.error.ErrorResponse"},"$objectType":"vmm.v4.content.GetImageApiResponse"}`,
			"VMM-20005", "", "Failed to perform the operation as the backend service could not find the entity.", nutanix.ErrNotFound},
		{"v4 schema", 400, `{"data":{"error":{"statusCode":400,"error":"Bad Request","validationErrorMessages":[{"attributePath":"$limit","message":"must be <= 100"}]}}}`,
			"", "SCHEMA_VALIDATION", "Bad Request; $limit: must be <= 100", nil},
		{"plain 401", 401, "invalid Nutanix credentials\n", "", "", "invalid Nutanix credentials", nutanix.ErrUnauthorized},
		{"html", 502, "<html><body>Bad gateway</body></html>", "", "", "", nil},
		{"403", 403, `{"state":"ERROR","message_list":[{"message":"User lacks role","reason":"ACCESS_DENIED"}]}`, "", "ACCESS_DENIED", "User lacks role", nutanix.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := nutanix.DecodeError("GET /x", tc.status, []byte(tc.body))
			if e.Status != tc.status || e.Reason != tc.reason || e.Message != tc.message {
				t.Errorf("got %+v", e)
			}
			if tc.code != "" && e.Code != tc.code {
				t.Errorf("code %q, want %q", e.Code, tc.code)
			}
			if tc.sentinel != nil && !errors.Is(e, tc.sentinel) {
				t.Errorf("%v is not %v", e, tc.sentinel)
			}
		})
	}
}

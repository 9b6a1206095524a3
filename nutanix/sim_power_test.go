package nutanix_test

import (
	"testing"

	"github.com/ahvfs/ahvfs/nutanix"
	"github.com/ahvfs/ahvfs/prismsim"
)

// TestSimShutdown asks guests to shut down over v3 and v4: through NGT
// (refused without the tools), by ACPI, and a hung guest that stays on
// until powered off hard.
func TestSimShutdown(t *testing.T) {
	for _, api := range []nutanix.APIVersion{nutanix.APIV3, nutanix.APIV4} {
		t.Run(string(api), func(t *testing.T) {
			s := startSim(t, prismsim.Options{})
			ctx := ctxT(t)
			add := func(name string, ngt prismsim.NGT) string {
				v, err := s.AddVM(ctx, name, []string{diskImage(t, 1<<20, 7)}, prismsim.VMOptions{NGT: ngt, Move: true})
				if err != nil {
					t.Fatal(err)
				}
				return v.UUID
			}
			tools, bare, hung := add("tools", prismsim.NGTInstalled), add("bare", prismsim.NGTAbsent), add("hung", prismsim.NGTInstalled)
			if err := s.SetGuestHung("hung", true); err != nil {
				t.Fatal(err)
			}
			c := simClient(t, s, api)
			power := func(id string) nutanix.PowerState {
				v, err := c.GetVM(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				return v.PowerState
			}
			if err := c.ShutdownVM(ctx, bare, true); err == nil {
				t.Error("a guest shutdown of a VM without NGT succeeded")
			}
			if p := power(bare); p != nutanix.PowerOn {
				t.Errorf("refused guest shutdown: VM is %s", p)
			}
			if err := c.ShutdownVM(ctx, tools, true); err != nil {
				t.Fatal(err)
			}
			if err := c.ShutdownVM(ctx, bare, false); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{tools, bare} {
				if p := power(id); p != nutanix.PowerOff {
					t.Errorf("VM %s after shutdown: %s", id, p)
				}
			}
			if err := c.ShutdownVM(ctx, tools, true); err != nil {
				t.Errorf("shutdown of a VM already off: %v", err)
			}
			for _, guest := range []bool{true, false} {
				if err := c.ShutdownVM(ctx, hung, guest); err != nil {
					t.Fatal(err)
				}
				if p := power(hung); p != nutanix.PowerOn {
					t.Errorf("hung guest (guest=%v): VM is %s", guest, p)
				}
			}
			if err := c.SetPowerState(ctx, hung, nutanix.PowerOff); err != nil {
				t.Fatal(err)
			}
			if p := power(hung); p != nutanix.PowerOff {
				t.Errorf("hard power-off of a hung guest: VM is %s", p)
			}
		})
	}
}

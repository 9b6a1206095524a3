// Package bootcheck proves that a restore point boots: it starts the
// restore point's disks in QEMU (KVM when it runs the guest, TCG
// otherwise or when it cannot; SeaBIOS or, for UEFI VMs, OVMF, with
// Secure Boot enforced for Secure Boot VMs) behind throwaway qcow2
// overlays, with no network, watches the
// first serial port for the expected text (a login prompt by default) or a
// known boot failure, and saves a PNG of the screen through QMP's
// screendump. The disks are read-only backing files (the FUSE mount or the
// NFS export of the restore point): nothing is written to the repository.
//
// The package knows QEMU's command line and QMP, and the restore point's
// machine (buses, memory, firmware); where the disks come from is the
// caller's choice.
package bootcheck

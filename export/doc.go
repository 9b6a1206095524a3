// Package export writes restore points out as files for another
// hypervisor (Export, `ahvfs export`): the disks in qcow2, vmdk, vhdx or
// raw, plus a VM description. It only reads the repository.
//
// Export converts disks with `qemu-img convert` reading straight from the
// engine through an in-process read-only NBD server (nbd/nbdserver) on a
// unix socket, so no temporary raw copy exists.
// Zero chunks cost a memclr. Beside the disks it writes an OVF 1.x
// descriptor (vSphere: vmdk streamOptimized) and a libvirt domain XML
// (KVM/Proxmox; not for vhdx, which libvirt cannot use), both from the VM
// configuration record (clusterjob.VMConfig).
package export

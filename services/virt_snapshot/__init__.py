"""virt-snapshot: VirtualMachineSnapshots, their contents, VirtualMachineRestores and the embedded
installation's local volume provisioner (see docs/snapshot-restore.md)."""

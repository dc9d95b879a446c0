"""virt-migration: drives VirtualMachineInstanceMigrations through their phases (issue 10)."""

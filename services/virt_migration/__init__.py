"""virt_migration package."""

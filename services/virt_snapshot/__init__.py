"""virt_snapshot package."""

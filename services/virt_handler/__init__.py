"""virt_handler package."""

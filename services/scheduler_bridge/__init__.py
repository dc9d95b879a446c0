"""scheduler_bridge package."""

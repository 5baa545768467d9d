"""VideoGen backend services."""

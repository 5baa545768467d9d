"""The providers service: registry, health and routing (issue 5)."""

"""Video providers: one small interface, the kinds that implement it, and the registry."""

"""Code every service shares: settings, logging, database, gRPC bootstrap, metrics."""

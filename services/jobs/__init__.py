"""The jobs service: owner of the jobs and telemetry tables, over gRPC."""

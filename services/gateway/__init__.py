"""The REST gateway: /api/v1 over gRPC (issue 6)."""

"""Tests of the REST gateway."""

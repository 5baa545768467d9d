"""Tests of the providers service and the provider kinds."""

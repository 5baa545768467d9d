"""Tests of the VideoGen backend."""

"""Fixtures for a real Label Studio server (owned by the stack/e2e work)."""

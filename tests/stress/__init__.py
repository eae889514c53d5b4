"""Soak and stress runs (long versions of tests/test_reliability*.py); see README.md here."""

"""Repository tooling run through the Makefile (not part of any service)."""

"""Shared kit of the Character Chat fleet: every service builds on these pieces."""

"""`python -m devstack`: the whole fleet on one machine with embedded real backends."""

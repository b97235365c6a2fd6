"""The probes stage."""

"""The verdict stage."""

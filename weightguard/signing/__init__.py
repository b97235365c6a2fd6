"""The signing stage."""

"""The integrity stage."""

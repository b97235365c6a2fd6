"""The convert stage."""

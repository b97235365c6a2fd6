"""One module per policy section; each stage owns its section's model."""

"""absl entry points (thin mains) and ml_collections configs for tracks4d experiments."""

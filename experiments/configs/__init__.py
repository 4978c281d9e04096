"""ml_collections configs: each module's `get_config(arg)` returns a ConfigDict."""

"""The optional rule files, one module each: its model, how it is built from YAML, its checks and its rule ids."""

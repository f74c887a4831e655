"""A rules directory becomes a checked, immutable Catalog: source -> schema -> model -> check (load.py runs them)."""

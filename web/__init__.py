"""The thin Flask app over the engine's public API."""

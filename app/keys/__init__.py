"""API keys: named, scoped bearer secrets stored hashed, revocable while the service runs."""

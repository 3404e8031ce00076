"""Shared plumbing: settings, database, errors, logging, the edge, metrics, the server."""

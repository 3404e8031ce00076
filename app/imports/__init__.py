"""Bulk import and export of purchases, for the command line (app.cli)."""

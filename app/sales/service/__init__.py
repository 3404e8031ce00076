"""Use cases, a module each: the rules around the SQL. No HTTP here, and no commit (the request
owns it)."""

"""Every SQL statement of sales, one module per use case. Repositories may flush, never commit."""

"""Customers and purchases: capture, batch, reads, corrections and erasure."""

"""End-to-end tests: the purchase page in a real headless Chromium against the real app."""

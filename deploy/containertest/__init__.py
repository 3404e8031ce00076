"""`make container-test`, by concern (deploy/container_test.py is the entry point)."""

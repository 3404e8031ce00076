"""The capture benchmark, by concern (bench/run.py is the entry point)."""

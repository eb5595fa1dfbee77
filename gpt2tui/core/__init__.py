"""The engine: plain Python, no UI imports, heavy libraries imported lazily inside functions."""

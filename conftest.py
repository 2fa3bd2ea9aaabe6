"""Project root on sys.path for every test (pytest's pythonpath does this too)."""

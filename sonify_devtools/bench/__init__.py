"""`python -m sonify bench`: what Sonify adds around the remote model's time, measured against the
emulator (runner.py). Importing this package imports nothing heavy: child.py relies on that."""

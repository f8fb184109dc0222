"""The application layer: configs, the command line, runs and their directories (built on the library core)."""

"""The package version, in a module of its own: read by the CLI's --version without
importing torch, and by the provenance every output carries."""

__version__ = "0.1.0"

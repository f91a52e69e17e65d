"""The package version, in a module of its own: ``setup.py`` reads it, and ``run.json`` records it
without importing the package's top level."""

__version__ = "0.1.0"

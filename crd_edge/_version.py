"""The package version, at the bottom so that any layer may record it."""

__version__ = "0.1.0"  # keep equal to pyproject.toml

"""trioprint: a 3D-printer host server on Trio, wire-compatible with Moonraker's API."""

from ._version import __version__

__all__ = ["__version__"]

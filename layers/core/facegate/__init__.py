"""facegate: face recognition for declared, approved, bounded uses only."""

__version__ = "0.1.0"

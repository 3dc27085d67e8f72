"""shotwatch: terminal-first online analysis and recording for XFEL experiments.

Importing ``shotwatch`` imports no console code (Textual), no network code and no zarr.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

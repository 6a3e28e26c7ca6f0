"""ratagent: live extinction-group classification of powder diffraction for Bluesky.

Importing ratagent is cheap: no model, no data file and no torch work is loaded until used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ratagent")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

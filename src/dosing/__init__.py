"""dosing: dose-adjustment decision support. It recommends; a person decides."""

__version__ = "0.1.0"

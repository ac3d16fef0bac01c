"""nvr-edge: edge ingest daemon for neighbourhood CCTV."""

__version__ = "0.1.0"

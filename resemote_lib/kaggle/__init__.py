"""Kaggle: its datasets (downloaded, or read in place where a kernel mounts them) and its GPU
kernels (``python -m resemote_lib kaggle push|pull``).

One module per concern: ``credentials`` (where the API token goes, the one message saying
so, quiet calls of the ``kaggle`` package), ``datasets`` (mounts and downloads),
``bundle`` (one commit's source as a deterministic tar.gz), ``kernels`` (the kernels API),
``push`` and ``pull`` (the two commands), ``cli`` (their command line) and ``runner``
(what runs inside the kernel: standard library only, pushed as one file).
"""

from .credentials import KaggleError, credential_sources
from .datasets import download, mount_candidates, mounted_root

__all__ = ["KaggleError", "credential_sources", "download", "mount_candidates", "mounted_root"]

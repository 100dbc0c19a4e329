"""The Redis index of listed subjects: layout in :mod:`.layout`, operations in :mod:`.store`."""

from .layout import Layout
from .store import ApplyResult, IndexMeta, IndexUnavailable, SanctionIndex

__all__ = ["ApplyResult", "IndexMeta", "IndexUnavailable", "Layout", "SanctionIndex"]

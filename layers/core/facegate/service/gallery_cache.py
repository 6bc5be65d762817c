"""A warm function's copy of its tenants' galleries, keyed by (tenant, gallery, version).

Every change of a gallery's templates raises the gallery's version in the same transaction
(``GalleryRecord.version``: an enrolment, a deletion, an erasure, a consent withdrawal, a recount), and a
search reads that version first (one strongly consistent read of the gallery row). A copy is used only
at the version it was built for, and is built from a strongly consistent read of the templates made
after the version was read, so it holds that version's changes or later ones: an erased or withdrawn
subject is never in a copy that a search at or after the erasure's version may use. A copy also stops at
its earliest template expiry (templates expire by time, without a write): at or after it, the copy is
rebuilt. Each entry is one tenant's (the tenant leads the key; a search reads it only inside that
tenant's scope) and the whole cache is bounded in bytes, least recently used first out.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from facegate.match import Gallery

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""64 MiB: about 100,000 templates (512 bytes each, plus ids); a 5,000-person gallery is about 3 MB."""
CACHE_ENV: Final = "FACEGATE_GALLERY_CACHE_MIB"


@dataclass(frozen=True)
class CachedGallery:
    gallery: Gallery
    valid_until: datetime | None
    """The earliest expiry among its templates (``None``: an empty gallery)."""
    nbytes: int


def _nbytes(gallery: Gallery) -> int:
    ids = sum(len(t) for t in gallery.template_ids) + sum(len(s) for s in gallery.subject_ids)
    return int(gallery.matrix.nbytes + gallery.offsets.nbytes + gallery.subject_codes.nbytes + ids + 64 * len(gallery))


Key = tuple[str, str, int]


class GalleryCache:
    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            max_bytes = int(float(os.environ.get(CACHE_ENV, DEFAULT_MAX_BYTES / 2**20)) * 2**20)
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, CachedGallery] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def cached(self) -> list[Key]:
        with self._lock:
            return list(self._entries)

    def get(
        self,
        key: Key,
        now: datetime,
        build: Callable[[], tuple[Gallery, datetime | None]],
    ) -> Gallery:
        """The gallery at ``key`` (tenant, gallery id, version): the cached copy while it is current,
        else ``build()`` (read at that version) cached in its place."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (entry.valid_until is None or now < entry.valid_until):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.gallery
            self.misses += 1
        gallery, valid_until = build()
        entry = CachedGallery(gallery, valid_until, _nbytes(gallery))
        with self._lock:
            tenant, gallery_id, _version = key
            for old in [k for k in self._entries if k[:2] == (tenant, gallery_id)]:
                del self._entries[old]  # another version of the same gallery is never used again
            if entry.nbytes <= self.max_bytes:
                self._entries[key] = entry
                while self.nbytes > self.max_bytes:
                    self._entries.popitem(last=False)
        return gallery

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

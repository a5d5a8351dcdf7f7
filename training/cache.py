"""The feature cache: one safetensors file per feature, named by a hash of everything it depends on.

A key hashes the kind of feature, a format version, the identity of the model file that makes it
(``file_identity``: size and the first and last MiB, so a replaced checkpoint is a new identity) and
the content it is made from (sha256 of the image and mask bytes, the caption text, the resolution
or crop). When any input changes the key changes, so stale entries are never read; they only take
space (delete the folder to reclaim it). Files are written atomically (temp file + rename), so
several processes may fill one cache at once. Every entry carries a checksum in its metadata (sha256 of
its key, tensors and metadata), verified on every read from the folder: an entry that does not match
(damaged, finite garbage behind a valid header, another entry's file copied over it) is logged with its
file name, computed again and rewritten. Entries read or
written are also kept in memory, up to ``memory_bytes``, so that an epoch over a small data set
reads no file at all.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open

from ..nested_attention_core.weights import write_safetensors

from .outputfiles import tensor_bytes, writing

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the way a feature is computed or stored changes (2: entries carry a checksum)
CHECKSUM_KEY = "sha256"  # metadata entry of every cache file
_IDENTITY_BYTES = 1 << 20


def file_identity(path) -> str:
    """A cheap content identity of a (large) model file: its size and first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_IDENTITY_BYTES))
        if size > _IDENTITY_BYTES:
            f.seek(max(_IDENTITY_BYTES, size - _IDENTITY_BYTES))
            digest.update(f.read(_IDENTITY_BYTES))
    return digest.hexdigest()[:32]


def feature_key(kind: str, *parts) -> str:
    return hashlib.sha256(json.dumps([CACHE_VERSION, kind, *parts], sort_keys=True).encode()).hexdigest()


def entry_checksum(key: str, tensors: dict, metadata: dict) -> str:
    """sha256 of an entry's key, its tensors (name, dtype, shape, bytes) and its metadata (but the checksum)."""
    digest = hashlib.sha256(key.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    digest.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    return digest.hexdigest()


class FeatureCache:
    """``root`` None: nothing is kept (every lookup misses, nothing is written)."""

    def __init__(self, root: Optional[Path], memory_bytes: int = 0):
        self.root = Path(root) if root is not None else None
        self.stats = Counter()  # hits / misses / writes per kind
        self.memory_bytes = memory_bytes if root is not None else 0
        self._memory: dict[tuple[str, str], tuple[dict, dict]] = {}
        self._memory_used = 0

    def _remember(self, kind: str, key: str, tensors: dict, metadata: dict) -> None:
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if self._memory_used + size <= self.memory_bytes:
            self._memory[(kind, key)] = (tensors, metadata)
            self._memory_used += size

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def load(self, kind: str, key: str) -> Optional[tuple[dict, dict]]:
        if self.root is None:
            self.stats[f"{kind}_misses"] += 1
            return None
        if (kind, key) in self._memory:
            self.stats[f"{kind}_hits"] += 1
            return self._memory[(kind, key)]
        path = self._path(kind, key)
        if not path.is_file():
            self.stats[f"{kind}_misses"] += 1
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError) as err:
            log.warning("feature cache entry %s is damaged (%s); computing it again", path, err)
            self.stats[f"{kind}_misses"] += 1
            return None
        stored = metadata.pop(CHECKSUM_KEY, None)
        if stored != entry_checksum(key, tensors, metadata):
            log.warning("feature cache entry %s does not match its checksum (%s); computing it again and rewriting "
                        "it", path, "it has none" if stored is None else "damaged, or another entry's file")
            self.stats[f"{kind}_bad_checksums"] += 1
            self.stats[f"{kind}_misses"] += 1
            return None
        self.stats[f"{kind}_hits"] += 1
        self._remember(kind, key, tensors, metadata)
        return tensors, metadata

    def save(self, kind: str, key: str, tensors: dict, metadata: dict) -> None:
        if self.root is None:
            return
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        with writing(path, tensor_bytes(tensors), "the feature-cache entry",
                     "free some space there, or give the cache another folder (--cache-dir) or none (--no-cache); "
                     "then run again (--resume latest continues from the last state written)"):
            write_safetensors(path, tensors, {**metadata, CHECKSUM_KEY: entry_checksum(key, tensors, metadata)})
        self.stats[f"{kind}_writes"] += 1
        self._remember(kind, key, tensors, metadata)


STALE_TEMP_AGE_S = 3600  # a cache may be shared by runs on other machines: their temp files are left an hour


def entry_folders(root: Path) -> list[Path]:
    """The folders holding a cache's entries (``<root>/<kind>/<2 hex digits>``), where writes leave temp files."""
    return [p for p in Path(root).glob("*/*") if p.is_dir()]


def as_stored(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What a tensor is once stored: floats rounded to the cache dtype (the same with or without a cache)."""
    return t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()

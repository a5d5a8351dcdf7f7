"""What weight and subject files share: safe reading and writing, checks, and format versions.

Both formats are safetensors with string metadata ``format`` and ``format_version``. Each format has
its own version and keeps a reader for every earlier one: an *upgrade* per old version turns that
version's tensors and metadata into the next version's, and ``upgrade_to`` applies them in turn
until the current version, so the loader that follows knows only the current layout.
Every failure is a ``WeightsFormatError`` naming the file and the fix.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .errors import WeightsFormatError
from .layers import LayerSpec, parse_layer_id

PathLike = Union[str, os.PathLike]
Files = tuple[dict[str, Tensor], dict[str, str]]  # (tensors, metadata) of one file
Upgrade = Callable[[Path, dict[str, Tensor], dict[str, str]], Files]  # one version -> the next


def upgrade_to(path: Path, what: str, tensors: dict[str, Tensor], metadata: dict[str, str], current: str,
               upgrades: dict[str, Upgrade]) -> Files:
    """``tensors`` and ``metadata`` of any version this pack reads, as version ``current``.

    ``upgrades`` maps each earlier version to the upgrade that makes the next version of it."""
    version = metadata.get("format_version")
    seen = set()
    while version != current:
        upgrade = upgrades.get(version)
        if upgrade is None or version in seen:
            raise WeightsFormatError(_unknown_version(path, what, version, current, upgrades))
        seen.add(version)
        tensors, metadata = upgrade(path, dict(tensors), dict(metadata))
        version = metadata.get("format_version")
    return tensors, metadata


def _unknown_version(path: Path, what: str, version, current: str, upgrades: dict) -> str:
    readable = ", ".join(repr(v) for v in [*upgrades, current])
    if isinstance(version, str) and version.isdigit() and current.isdigit() and int(version) > int(current):
        return (f"{path}: {what} format_version {version!r} was written by a newer Nested Attention node pack "
                f"(this one reads {readable}); update the node pack")
    return (f"{path}: {what} format_version {version!r} is not one this node pack reads ({readable}); the file "
            "was edited or not written by this pack: save it again")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process umask (read from /proc on Linux; elsewhere by
    setting it and putting it back, which another thread creating a file at that instant could notice)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o077)
        os.umask(mask)
    return 0o666 & ~mask


def write_safetensors(path: PathLike, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Atomic write (temp file + rename, the temp named per process so concurrent writers never
    share it): a reader sees the old file or the whole new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, new_file_mode())  # safetensors creates files 0600: a ComfyUI of another user could not read them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise




def require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise WeightsFormatError(f"{what} file not found: {path}; check the file name and folder")
    if not path.is_file():
        raise WeightsFormatError(f"{what} path {path} is not a file; give the path of the file itself")


def read_safetensors(path: PathLike, what: str, fix: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file, or a WeightsFormatError saying why not."""
    path = Path(path)
    require_file(path, what)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise WeightsFormatError(_unreadable(path, what, fix, err)) from None
    return tensors, metadata


def _unreadable(path: Path, what: str, fix: str, err: Exception) -> str:
    if isinstance(err, OSError):
        return f"{path} cannot be read ({err}); check that the file is readable"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK":
        return (f"{path} is a zip/PyTorch checkpoint, not a safetensors file; an IP-Adapter Plus "
                f"checkpoint must be named .bin/.pt/.pth to be read with torch.load(weights_only=True); {fix}")
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if head[8:9] == b"{" and 0 < header_len < 100_000_000:
        return (f"{path} is a truncated or corrupt safetensors file ({err}); the download or save "
                f"was cut short: download or save it again")
    return f"{path} is not a safetensors {what} file ({err}); {fix}"


def require_metadata(path: Path, metadata: dict[str, str], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in metadata]
    if missing:
        raise WeightsFormatError(f"{path}: metadata {missing} missing; the file was not written by this "
                                 "node pack or was edited: save it again")


def metadata_int(path: Path, metadata: dict[str, str], key: str) -> int:
    try:
        return int(metadata[key])
    except ValueError:
        raise WeightsFormatError(f"{path}: metadata {key}={metadata[key]!r} is not an integer; "
                                 "the file was edited: save it again") from None


def layers_to_json(layers: list[LayerSpec]) -> str:
    return json.dumps([[layer.id, layer.width] for layer in layers])


def layers_from_json(path: Path, text: str) -> list[LayerSpec]:
    try:
        return [parse_layer_id(layer_id, width) for layer_id, width in json.loads(text)]
    except (ValueError, TypeError) as err:
        raise WeightsFormatError(f"{path}: metadata layers {text[:100]!r} is not a JSON list of "
                                 f"[id, width] ({err}); the file was edited: save it again") from None


def check_tensor_layout(path: Path, expected: dict[str, tuple[int, ...]], tensors: dict[str, Tensor],
                        fix: str) -> None:
    """Exactly the expected keys, each with its expected shape and a floating dtype."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_few(unexpected)}")
    for key in sorted(set(expected) & set(tensors)):
        t = tensors[key]
        if tuple(t.shape) != tuple(expected[key]):
            problems.append(f"tensor {key} has shape {list(t.shape)}, expected {list(expected[key])}")
        elif not t.is_floating_point():
            problems.append(f"tensor {key} has dtype {t.dtype}, expected a floating dtype")
    if problems:
        raise WeightsFormatError(f"{path}: {'; '.join(_few(problems, 3))}; {fix}")


def check_finite(path: Path, tensors: dict[str, Tensor], fix: str) -> None:
    """Every floating tensor finite, else a WeightsFormatError naming the file and the first bad tensors."""
    bad = sorted(k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
    if bad:
        raise WeightsFormatError(f"{path}: tensors {_few(bad)} hold NaN or infinite values; {fix}")


def _few(items: list, n: int = 4) -> list:
    return items if len(items) <= n else items[:n] + [f"... {len(items) - n} more"]

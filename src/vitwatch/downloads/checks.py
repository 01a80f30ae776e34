"""What a downloaded or handed-in file must be: its published digest (or the test mirror's),
its digest computed, and its format (a login page served with HTTP 200 is not a ``.npz``).

The published digests: SHA-256 of the Stanford Dogs archives (as in TFDS' ``stanford_dogs``
builder) and of CIFAR-10 (as in Keras' ``keras/src/datasets/cifar10.py``), MD5 of ResNet-50
(Keras' ``keras/src/applications/resnet.py`` ``WEIGHTS_HASHES``); other files are checked by
their announced length. For tests and the rehearsal only:
``VITWATCH_MIRROR_CHECKSUMS=/path/to/checksums.json`` (``{"<resource name>": {"sha256": hex} or
{"md5": hex} or null}``), honoured only together with ``VITWATCH_MIRROR``, replaces the
published digests of the stand-in files a mirror serves. Real users never set it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zipfile
from pathlib import Path

from .resources import Resource


def expected_digest(res: Resource) -> tuple[str, str] | None:
    """("sha256" | "md5", hex) the download must match, or None (then: the announced length).

    The published digest, unless the test-only ``VITWATCH_MIRROR_CHECKSUMS`` file (read only
    when ``VITWATCH_MIRROR`` is set too) names ``res.name``."""
    table = os.environ.get("VITWATCH_MIRROR_CHECKSUMS")
    if table and os.environ.get("VITWATCH_MIRROR"):
        try:
            overrides = json.loads(Path(table).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"VITWATCH_MIRROR_CHECKSUMS={table}: not a readable JSON file ({exc})"
            ) from None
        if res.name in overrides:
            entry = overrides[res.name] or {}
            algo = "sha256" if "sha256" in entry else "md5" if "md5" in entry else None
            return (algo, entry[algo].lower()) if algo else None
    if res.sha256:
        return "sha256", res.sha256
    if res.md5:
        return "md5", res.md5
    return None


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of the file ``path`` (``algo``: "sha256" or "md5")."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_MAGIC = {".npz": (b"PK\x03\x04",), ".h5": (b"\x89HDF\r\n\x1a\n",), ".gz": (b"\x1f\x8b",)}


def check_format(path: Path, name: str | None = None) -> None:
    """Raise ValueError when ``path`` is not what its name says (``.npz``, ``.h5``, ``.tar``,
    ``.tar.gz``): typically an HTML error or login page served with HTTP 200."""
    name = name or path.name
    with open(path, "rb") as f:
        head = f.read(512)
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise ValueError(f"{path} is a web page, not {name} (a login or error page?)")
    suffix = next((s for s in _MAGIC if name.endswith(s)), None)
    if suffix and not head.startswith(_MAGIC[suffix]):
        raise ValueError(f"{path} is not a {suffix} file (starts with {head[:8]!r})")
    if name.endswith(".npz"):
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # CRC of every member
        if bad is not None:
            raise ValueError(f"{path}: member {bad} is corrupt")
    if name.endswith(".tar") and not tarfile.is_tarfile(path):
        raise ValueError(f"{path} is not a tar archive")

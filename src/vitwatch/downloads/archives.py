"""Safe archive extraction: tar and tar.gz extracted with ``extractall(filter="data")`` where
Python has it (``tarfile.data_filter``: 3.10.12+, 3.11.4+, PEP 706) and an equivalent member
check otherwise, into a folder written atomically (a temporary folder, then a rename)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _safe_members(tar: tarfile.TarFile, dest: Path):
    """The members of ``tar``, refusing what ``filter="data"`` refuses: absolute names, names
    or links leaving ``dest``, devices and FIFOs (PEP 706); modes limited to rwx by the owner."""
    for m in tar.getmembers():
        if os.path.isabs(m.name) or not _inside(dest, dest / m.name):
            raise tarfile.TarError(f"member {m.name!r} would be written outside {dest}")
        if m.issym() or m.islnk():
            base = dest if m.islnk() else (dest / m.name).parent
            if os.path.isabs(m.linkname) or not _inside(dest, base / m.linkname):
                raise tarfile.TarError(f"link {m.name!r} -> {m.linkname!r} leaves {dest}")
        elif not (m.isfile() or m.isdir()):
            raise tarfile.TarError(f"member {m.name!r} is a device or FIFO")
        m.mode = (m.mode or 0o644) & 0o755 | (0o700 if m.isdir() else 0o600)
        yield m


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Extract ``archive`` (tar, tar.gz) into the existing folder ``dest``, safely."""
    dest = Path(dest)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.10.12 / 3.11.4
            tar.extractall(dest, members=list(_safe_members(tar, dest)))


def extract(archive: Path, dest: Path, expect: str | None = None) -> Path:
    """Extract ``archive`` into the folder ``dest``, atomically (temporary folder, rename).

    A single top-level folder is unwrapped (``cifar-10-batches-py/``). ``expect``: a file the
    result must hold (``saved_model.pb``)."""
    dest = Path(dest)
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            extract_tar(archive, tmp)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ValueError(f"{archive}: not a readable tar archive ({exc})") from None
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if expect and not (root / expect).exists():
            raise ValueError(f"{archive}: no {expect} in the archive")
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest

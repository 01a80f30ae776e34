"""The one error of the downloads, and the alternatives every message of it names."""

from __future__ import annotations

from pathlib import Path

OFFLINE_HINT = (
    "Alternatives: run `make report PROFILE=smoke` (synthetic data and tiny generated models, "
    "no network); or fetch the file on a connected machine and hand it in (Stanford Dogs "
    "archives: parameter dogs_archives_dir; ViT checkpoint: vit_checkpoint=/path/to/file.npz; "
    "TF Hub model: hub_handle=/path/to/extracted/savedmodel; or copy it into the cache folder "
    "<cache>/downloads/ under the file name of vitwatch.downloads.RESOURCES)."
)


class DownloadError(RuntimeError):
    """A resource could not be fetched; the message names the URL, the cause and the
    alternatives. ``cause`` is one of "refused", "not found", "timeout", "offline",
    "checksum mismatch", "truncated", "bad file", "http error"."""

    def __init__(self, message: str, url: str = "", cause: str = ""):
        super().__init__(message)
        self.url, self.cause = url, cause


def alternatives(dest: Path | None) -> str:
    """The alternatives to a failed download, with where to hand the file in (``dest``)."""
    where = f"Hand the file in: put it at {dest}. " if dest is not None else ""
    return where + OFFLINE_HINT

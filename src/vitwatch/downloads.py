"""Every file vitwatch fetches from the network, in one table, with one downloader.

:func:`fetch` serves each entry of :data:`RESOURCES` (Stanford Dogs tars, ViT ``.npz``
checkpoints, the ResNet-50 ``.h5``, the TF Hub archive, CIFAR-10) from
``$VITWATCH_CACHE/downloads`` (``cfg.cache_dir``), downloading it first when needed:

- ``urllib`` with a connect timeout and a read timeout (a server that accepts the connection and
  never answers fails within ``read`` seconds, tensorflow/hub#932-style stalls included);
- bounded retries with exponential backoff on timeouts, dropped connections and HTTP 5xx/429;
  none on 403/404 and other 4xx (tfhub.dev -> Kaggle 403s persist, tensorflow/hub#922, #932);
- resume of an interrupted download from ``<file>.part`` with an HTTP ``Range`` request
  (RFC 9110 section 14; a server that ignores it answers 200 and the download restarts);
- the file is renamed from ``.part`` only when complete and verified: the published SHA-256
  (Stanford Dogs, as in TFDS' ``stanford_dogs`` builder; CIFAR-10, as in Keras'
  ``keras/src/datasets/cifar10.py``) or MD5 (ResNet-50, Keras'
  ``keras/src/applications/resnet.py`` ``WEIGHTS_HASHES``), else the announced length; plus a
  format check (a login page served with HTTP 200 is not a ``.npz``);
- a cached file is checked against the digest recorded when it was downloaded
  (``<file>.meta.json``) whenever its size or time stamp changed, and downloaded again if corrupt;
- archives (tar, tar.gz) are extracted into a folder written atomically, with
  ``extractall(filter="data")`` where Python has it (``tarfile.data_filter``: 3.10.12+,
  3.11.4+, PEP 706) and an equivalent member check otherwise;
- a ``tqdm`` progress bar (size, rate, time left) on stderr;
- one :class:`DownloadError` per failure naming the URL, the cause and the alternatives.

For tests and the rehearsal only: ``VITWATCH_MIRROR=http://127.0.0.1:PORT`` fetches every URL
``https://host/path?query`` from ``$VITWATCH_MIRROR/host/path?query`` (redirects included), and
``VITWATCH_MIRROR_CHECKSUMS=/path/to/checksums.json`` (``{"<resource name>": {"sha256": hex} or
{"md5": hex} or null}``), honoured only together with ``VITWATCH_MIRROR``, replaces the
published digests of the stand-in files a mirror serves. Real users never set either.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Resource:
    """One downloadable file. ``url``: what a parameter names (for TF Hub: the handle);
    ``fname``: its name under ``downloads/`` (for archives with ``extract``: the extracted
    folder, the archive itself being ``archive``); ``size``: bytes, for messages only."""

    name: str
    url: str
    fname: str
    sha256: str | None = None
    size: int | None = None
    extract: bool = False
    md5: str | None = None
    archive: str | None = None  # archive file name when ``extract``
    query: str = ""  # appended to ``url`` for the download itself
    expect: str | None = None  # a file the extracted folder must hold
    kaggle: str | None = None  # kagglehub model handle of the same files (fallback)
    optional: bool = False  # the report goes on without it

    @property
    def download_url(self) -> str:
        return self.url + (("&" if "?" in self.url else "?") + self.query if self.query else "")

    @property
    def file(self) -> str:
        """Name of the downloaded file under ``downloads/``."""
        return self.archive if self.extract else self.fname


_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
_VIT = "https://storage.googleapis.com/vit_models/augreg/"
_S16 = "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
_BIT = "https://storage.googleapis.com/bit_models/"
_KAGGLE_VIT = "spsayakpaul/vision-transformer/tensorFlow2/"
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"

# Stanford Dogs SHA-256s as published with TFDS' `stanford_dogs` builder; ResNet-50's MD5 is
# WEIGHTS_HASHES["resnet50"][0] of keras/src/applications/resnet.py; CIFAR-10's SHA-256 is the
# file_hash of keras/src/datasets/cifar10.py. The ViT .npz files have no published digest.
RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in [
        Resource(
            "dogs_images",
            _DOGS + "images.tar",
            "images.tar",
            "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
            793_579_520,
        ),
        Resource(
            "dogs_lists",
            _DOGS + "lists.tar",
            "lists.tar",
            "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
            481_280,
        ),
        Resource(
            "dogs_annotation",
            _DOGS + "annotation.tar",
            "annotation.tar",
            "662ed36f707be6b195c2fda392d8e153e83af28cedc8e2134a649f198def30fd",
            21_852_160,
        ),
        Resource(
            "vit_s16_i21k_ft_i1k",
            _VIT + _S16 + "--imagenet2012-steps_20k-lr_0.03-res_224.npz",
            "vit_s16_i21k_ft_i1k.npz",
            None,
            88_000_000,
        ),
        Resource("vit_s16_i21k", _VIT + _S16 + ".npz", "vit_s16_i21k.npz", None, 120_000_000),
        Resource(
            "vit_b16_i21k_ft_i1k",
            _VIT + "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0"
            "-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz",
            "vit_b16_i21k_ft_i1k.npz",
            None,
            350_000_000,
        ),
        # BiT-M R50x1 (big_transfer README); no published digest: verified by announced length.
        # Sizes approximate: float32 weights, 68.3 M parameters (21k head) / 25.5 M (1k head).
        Resource("bit_m_r50x1", _BIT + "BiT-M-R50x1.npz", "BiT-M-R50x1.npz", None, 274_000_000),
        Resource(
            "bit_m_r50x1_ilsvrc2012",
            _BIT + "BiT-M-R50x1-ILSVRC2012.npz",
            "BiT-M-R50x1-ILSVRC2012.npz",
            None,
            103_000_000,
        ),
        Resource(
            "hub_vit_s16_fe",
            "https://tfhub.dev/sayakpaul/vit_s16_fe/1",
            "vit_s16_fe",
            size=80_000_000,
            extract=True,
            archive="vit_s16_fe.tar.gz",
            query="tf-hub-format=compressed",
            expect="saved_model.pb",
            kaggle=_KAGGLE_VIT + "vit-s16-fe",
            optional=True,
        ),
        Resource(
            "hub_vit_s16_classification",
            "https://tfhub.dev/sayakpaul/vit_s16_classification/1",
            "vit_s16_classification",
            size=85_000_000,
            extract=True,
            archive="vit_s16_classification.tar.gz",
            query="tf-hub-format=compressed",
            expect="saved_model.pb",
            kaggle=_KAGGLE_VIT + "vit-s16-classification",  # by analogy
            optional=True,
        ),
        Resource(
            "resnet50_imagenet",
            _KERAS_APPS + "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            None,
            102_967_424,
            md5="2cb95161c43110f7111970584f804107",
        ),
        # BVLC/caffe's ILSVRC-2012 auxiliary files (data/ilsvrc12/get_ilsvrc_aux.sh); train.txt
        # lists the 1,281,167 training images. No published digest: imagenet_overlap checks
        # its content.
        Resource(
            "ilsvrc12_aux",
            "http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz",
            "caffe_ilsvrc12.tar.gz",
            None,
            17_900_000,
        ),
        Resource(
            "cifar10",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-batches-py",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170_498_071,
            extract=True,
            archive="cifar-10-python.tar.gz",
            expect="data_batch_1",
        ),
    ]
}

OFFLINE_HINT = (
    "Alternatives: run `make report PROFILE=smoke` (synthetic data and tiny generated models, "
    "no network); or fetch the file on a connected machine and hand it in (Stanford Dogs "
    "archives: parameter dogs_archives_dir; ViT checkpoint: vit_checkpoint=/path/to/file.npz; "
    "TF Hub model: hub_handle=/path/to/extracted/savedmodel; or copy it into the cache folder "
    "<cache>/downloads/ under the file name of vitwatch.downloads.RESOURCES)."
)
CONNECT_TIMEOUT = 15.0  # seconds to open a connection (TCP + TLS)
READ_TIMEOUT = 30.0  # seconds without a byte from the server
RETRIES = 4  # tries per download (timeouts, dropped connections, 5xx)
BACKOFF = 1.0  # seconds before the 2nd try, doubled each time, at most MAX_BACKOFF
MAX_BACKOFF = 16.0
USER_AGENT = "vitwatch/0.1 (+urllib)"


class DownloadError(RuntimeError):
    """A resource could not be fetched; the message names the URL, the cause and the
    alternatives. ``cause`` is one of "refused", "not found", "timeout", "offline",
    "checksum mismatch", "truncated", "bad file", "http error"."""

    def __init__(self, message: str, url: str = "", cause: str = ""):
        super().__init__(message)
        self.url, self.cause = url, cause


class _Retry(Exception):
    """A failure worth another try (timeout, dropped connection, 5xx, truncated body)."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


# --- URLs, the test mirror and checksums -----------------------------------------------------


def mirror_url(url: str) -> str:
    """``url`` rewritten to ``$VITWATCH_MIRROR/host/path?query`` when that test-only variable
    is set (and ``url`` is not already on the mirror); else ``url`` unchanged."""
    mirror = os.environ.get("VITWATCH_MIRROR", "").rstrip("/")
    if not mirror or url.startswith(mirror + "/"):
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    return f"{mirror}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


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
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_subdir(cache_dir: str | os.PathLike, sub: str = "downloads") -> Path:
    path = Path(cache_dir).expanduser() / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def _hint(res: Resource | None, dest: Path | None) -> str:
    where = f"Hand the file in: put it at {dest}. " if dest is not None else ""
    return where + OFFLINE_HINT


# --- the HTTP layer: timeouts and redirects -----------------------------------------------


class _ConnectTimeout:
    """Open the connection (TCP, TLS) under ``connect_timeout``; then read under ``timeout``."""

    def __init__(self, *args, connect_timeout: float = CONNECT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self):
        read = self.timeout
        self.timeout = self.connect_timeout
        try:
            super().connect()
        finally:
            self.timeout = read
        self.sock.settimeout(read)


class _HTTPConnection(_ConnectTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):
    pass


class _RedirectToMirror(urllib.request.HTTPRedirectHandler):
    """Follow redirects (at most ``max_redirections``, 10), through the test mirror if set."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # the Range header of a resumed request is carried over (only Content-* are dropped)
        return super().redirect_request(req, fp, code, msg, headers, mirror_url(newurl))


def _opener(connect_timeout: float) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(_HTTPConnection, req, connect_timeout=connect_timeout)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(
                _HTTPSConnection, req, connect_timeout=connect_timeout, context=self._context
            )

    return urllib.request.build_opener(HTTP, HTTPS, _RedirectToMirror)


def _open(url: str, headers: dict, timeout: tuple[float, float]):
    req = urllib.request.Request(mirror_url(url), headers={"User-Agent": USER_AGENT, **headers})
    return _opener(timeout[0]).open(req, timeout=timeout[1])


def _classify(exc: BaseException) -> tuple[str, str, bool]:
    """(cause, short text, worth retrying) of a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if code in (401, 403):
            return "refused", f"refused (HTTP {code})", False
        if code in (404, 410):
            return "not found", f"not found (HTTP {code})", False
        return "http error", f"HTTP {code} {exc.reason}", code >= 500 or code in (408, 429)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return "timeout", f"timeout ({reason})", True
    if isinstance(reason, socket.gaierror):
        return "offline", f"offline (DNS: {reason})", True
    if isinstance(reason, (ConnectionError, http.client.HTTPException, OSError)):
        return "offline", f"offline (connection: {type(reason).__name__}: {reason})", True
    return "offline", f"{type(exc).__name__}: {exc}", True


# --- one download -------------------------------------------------------------------------


def _announced_total(resp, start: int) -> int | None:
    if resp.status == 206:
        crange = resp.headers.get("Content-Range", "")  # bytes 100-199/200
        total = crange.rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _attempt(
    url: str, part: Path, timeout: tuple[float, float], progress: bool, label: str
) -> int | None:
    """One request: resume ``part`` if it holds bytes; return the announced total length."""
    have = part.stat().st_size if part.exists() else 0
    validator = part.with_name(part.name + ".etag")  # the part's ETag / Last-Modified
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and validator.is_file():  # RFC 9110 13.1.5: the rest of the
        headers["If-Range"] = validator.read_text()  # same file, or all of a new one
    try:
        resp = _open(url, headers, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send, or a stale part
            crange = exc.headers.get("Content-Range", "")
            total = crange.rsplit("/", 1)[-1]
            if total.isdigit() and int(total) == have:
                return have
            part.unlink()
            raise _Retry("truncated", f"the server refused to resume at byte {have}") from None
        raise
    with resp:
        if resp.status == 206:
            start = resp.headers.get("Content-Range", "bytes 0-").split()[-1].split("-")[0]
            if not start.isdigit() or int(start) != have:
                part.unlink()
                raise _Retry("truncated", f"resumed at byte {start} instead of {have}")
            mode = "ab"
        else:  # 200: Range ignored or file changed: restart
            have, mode = 0, "wb"
            tag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if tag:
                validator.write_text(tag)
            elif validator.exists():
                validator.unlink()
        total = _announced_total(resp, have)
        bar = _bar(total, have, label, progress)
        try:
            with open(part, mode) as f:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
        except TimeoutError as exc:
            raise _Retry("timeout", f"timeout: no data for {timeout[1]:.0f} s ({exc})") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retry("truncated", f"connection dropped: {type(exc).__name__}: {exc}") from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Retry("truncated", f"truncated: {got:,} of {total:,} bytes received")
    if total is not None and got > total:
        part.unlink()
        raise _Retry("truncated", f"{got:,} bytes received, {total:,} announced")
    return total


def _bar(total, initial, label, progress):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0,
        dynamic_ncols=True,
        leave=False,
    )


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


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".meta.json")


def _cached_ok(dest: Path, digest: tuple[str, str] | None) -> bool:
    """A cached file is trusted when its size and time stamp match what was recorded when it
    was verified; otherwise it is hashed again (against ``digest`` or the recorded SHA-256)."""
    stat = dest.stat()
    try:
        meta = json.loads(_meta_path(dest).read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("size") == stat.st_size and meta.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if digest is not None:
        ok = file_digest(dest, digest[0]) == digest[1]
    elif "sha256" in meta:
        ok = meta.get("size") == stat.st_size and file_digest(dest) == meta["sha256"]
    else:  # handed in by hand, no record: format only
        try:
            check_format(dest)
        except (ValueError, OSError, zipfile.BadZipFile):
            return False
        ok = True
    if ok:
        _write_meta(dest, meta.get("url", ""))
    return ok


def _write_meta(dest: Path, url: str) -> None:
    from . import fileio

    stat = dest.stat()
    fileio.write_json(
        _meta_path(dest),
        {
            "url": url,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": file_digest(dest),
        },
        indent=1,
    )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    digest: tuple[str, str] | None = None,
    retries: int = RETRIES,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    progress: bool = True,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); return ``dest``.

    ``digest``: ("sha256" | "md5", hex) to verify; without it the announced length is the
    check. Raises :class:`DownloadError` (URL, cause, ``hint``) when every try failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = hint if hint is not None else _hint(None, dest)
    if dest.is_file():
        if _cached_ok(dest, digest):
            return dest
        print(f"vitwatch: {dest} is corrupt (checksum): downloading it again", file=sys.stderr)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    last, fresh_after_mismatch = None, False
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(min(BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF))
        resumed = part.exists() and part.stat().st_size > 0
        try:
            total = _attempt(url, part, timeout, progress, dest.name)
        except urllib.error.HTTPError as exc:
            cause, text, again = _classify(exc)
            last = (cause, text)
            if not again:
                break
            continue
        except _Retry as exc:
            last = (exc.cause, str(exc))
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last = _classify(exc)[:2]
            continue
        problem = _verify(part, dest.name, digest, total)
        part.with_name(part.name + ".etag").unlink(missing_ok=True)
        if problem is None:
            os.replace(part, dest)
            _write_meta(dest, url)
            return dest
        part.unlink()
        last = problem
        if problem[0] == "checksum mismatch" and resumed and not fresh_after_mismatch:
            fresh_after_mismatch = True  # a stale part: one fresh try
            continue
        break
    cause, text = last
    raise DownloadError(f"could not download {url}: {text}.\n{hint}", url=url, cause=cause)


def _verify(part: Path, name: str, digest, total) -> tuple[str, str] | None:
    if digest is not None:
        got = file_digest(part, digest[0])
        if got != digest[1]:
            return (
                "checksum mismatch",
                f"checksum mismatch ({digest[0]} {got[:12]}... "
                f"instead of the published {digest[1][:12]}...)",
            )
    try:
        check_format(part, name)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        return "bad file", str(exc).replace(str(part), name)
    return None


# --- archives ---------------------------------------------------------------------------------


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


# --- resources ----------------------------------------------------------------------------


def _complete(res: Resource, path: Path) -> bool:
    if res.extract:
        return path.is_dir() and (res.expect is None or (path / res.expect).exists())
    return path.is_file()


def fetch(
    name: str,
    cache_dir: str | os.PathLike,
    retries: int = RETRIES,
    local_dir: str | os.PathLike | None = None,
    verify: bool = True,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    progress: bool = True,
) -> Path:
    """Local path of resource ``name`` (a file, or for archives the extracted folder).

    Looked for in ``local_dir`` (a folder where the user put the file by hand; checked against
    the published digest unless ``verify=False``, for the generated stand-ins), then in
    ``<cache_dir>/downloads``; downloaded otherwise. Raises :class:`DownloadError`.
    """
    res = RESOURCES[name]
    cache = cache_subdir(cache_dir)
    digest = expected_digest(res) if verify else None
    if local_dir:
        local = Path(local_dir).expanduser()
        if _complete(res, local / res.fname):
            if not res.extract and digest is not None:
                _check_handed_in(local / res.fname, res, digest)
            return local / res.fname
        if res.extract and (local / res.file).is_file():
            return extract(_checked(local / res.file, res, digest), cache / res.fname, res.expect)
    target = cache / res.fname
    if res.extract and _complete(res, target):
        return target
    hint = _hint(res, cache / res.file)
    path = download(
        res.download_url,
        cache / res.file,
        digest=digest,
        retries=retries,
        timeout=timeout,
        progress=progress,
        hint=hint,
    )
    if not res.extract:
        return path
    try:
        return extract(path, target, res.expect)
    except ValueError as exc:
        path.unlink()
        raise DownloadError(
            f"{res.download_url}: {exc}.\n{hint}", url=res.download_url, cause="bad file"
        ) from None


def _checked(path: Path, res: Resource, digest) -> Path:
    if digest is not None:
        _check_handed_in(path, res, digest)
    return path


def _check_handed_in(path: Path, res: Resource, digest: tuple[str, str]) -> None:
    """A file put in place by hand must be the published one (a digest is known for it)."""
    algo, want = digest
    got = file_digest(path, algo)
    if got != want:
        raise DownloadError(
            f"{path} is not the published {res.file} ({algo} {got[:12]}... "
            f"expected {want[:12]}...): download it again from {res.url}",
            url=res.url,
            cause="checksum mismatch",
        )


def is_cached(
    name: str, cache_dir: str | os.PathLike, local_dir: str | os.PathLike | None = None
) -> bool:
    """True when ``fetch`` will not need the network for ``name``."""
    res = RESOURCES[name]
    dirs = [Path(cache_dir).expanduser() / "downloads"]
    dirs += [Path(local_dir).expanduser()] if local_dir else []
    return any(
        _complete(res, d / res.fname) or (res.extract and (d / res.file).is_file()) for d in dirs
    )


# --- preflight --------------------------------------------------------------------------------


def probe(url: str, timeout: float = 10.0) -> str:
    """What downloading ``url`` would meet now, without downloading it (GET, ``Range:
    bytes=0-0``, redirects followed): "reachable", "refused (HTTP 403)", "not found (HTTP 404)",
    "offline (DNS/connection: ...)", "timeout (...)" or "HTTP <code> ..."."""
    try:
        with _open(url, {"Range": "bytes=0-0"}, (timeout, timeout)) as resp:
            resp.read(1)
            return "reachable"
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # an empty file: still reachable
            return "reachable"
        return _classify(exc)[1]
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return _classify(exc)[1]


def reachable(url: str, timeout: float = 10.0) -> tuple[bool, str]:
    """(ok, reason) of :func:`probe`."""
    status = probe(url, timeout)
    return status == "reachable", status


def preflight(
    names: list[str],
    cache_dir: str | os.PathLike,
    local_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
) -> dict[str, str]:
    """Status of every resource ``names``: "cached", or what :func:`probe` finds at the URL
    that will actually be downloaded. Raises :class:`DownloadError` listing each needed
    resource that is neither cached nor reachable (optional ones, the TF Hub model, are only
    reported: the report goes on without them)."""
    status = {}
    for name in names:
        res = RESOURCES[name]
        status[name] = (
            "cached" if is_cached(name, cache_dir, local_dir) else probe(res.download_url, timeout)
        )
    failed = [
        f"  - {n}: {RESOURCES[n].download_url} ({s})"
        for n, s in status.items()
        if s not in ("cached", "reachable") and not RESOURCES[n].optional
    ]
    optional = [
        f"  - {n}: {RESOURCES[n].download_url} ({s}; optional: Kaggle Models is tried "
        "next, else the report goes on without it)"
        for n, s in status.items()
        if s not in ("cached", "reachable") and RESOURCES[n].optional
    ]
    if failed:
        raise DownloadError(
            "these downloads are needed and could not be reached:\n"
            + "\n".join(failed + optional)
            + "\n"
            + OFFLINE_HINT,
            cause="preflight",
        )
    return status

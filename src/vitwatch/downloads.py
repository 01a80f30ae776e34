"""Every file vitwatch fetches from the network, in one table, with one fetch and one preflight.

Downloads go through ``keras.utils.get_file`` (cache, checksum, extraction) with retries, because
the hosts involved (Stanford's server, tfhub.dev -> Kaggle, Google Storage) fail intermittently
(tensorflow/hub#932, #922). :func:`preflight` checks, before any long work starts, that every
resource a profile needs is either cached or reachable, and otherwise raises one error naming
each URL that failed and the offline alternatives.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Resource:
    name: str
    url: str
    fname: str
    sha256: str | None = None
    size: int | None = None          # bytes, for the "about to download" message
    extract: bool = False


_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
_VIT = "https://storage.googleapis.com/vit_models/augreg/"
_S16 = "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
_BIT = "https://storage.googleapis.com/bit_models/"

# Checksums of the Stanford Dogs archives as published with TFDS' `stanford_dogs` builder.
RESOURCES: dict[str, Resource] = {r.name: r for r in [
    Resource("dogs_images", _DOGS + "images.tar", "images.tar",
             "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58", 793_579_520),
    Resource("dogs_lists", _DOGS + "lists.tar", "lists.tar",
             "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c", 481_280),
    Resource("dogs_annotation", _DOGS + "annotation.tar", "annotation.tar",
             "662ed36f707be6b195c2fda392d8e153e83af28cedc8e2134a649f198def30fd", 21_852_160),
    Resource("vit_s16_i21k_ft_i1k", _VIT + _S16 + "--imagenet2012-steps_20k-lr_0.03-res_224.npz",
             "vit_s16_i21k_ft_i1k.npz", None, 88_000_000),
    Resource("vit_s16_i21k", _VIT + _S16 + ".npz", "vit_s16_i21k.npz", None, 120_000_000),
    Resource("vit_b16_i21k_ft_i1k", _VIT + "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0"
             "--imagenet2012-steps_20k-lr_0.01-res_224.npz", "vit_b16_i21k_ft_i1k.npz", None, 350_000_000),
    # BiT-M R50x1 (big_transfer README); no published digest: verified by announced length.
    # Sizes approximate: float32 weights, 68.3 M parameters (21k head) / 25.5 M (1k head).
    Resource("bit_m_r50x1", _BIT + "BiT-M-R50x1.npz", "BiT-M-R50x1.npz", None, 274_000_000),
    Resource("bit_m_r50x1_ilsvrc2012", _BIT + "BiT-M-R50x1-ILSVRC2012.npz",
             "BiT-M-R50x1-ILSVRC2012.npz", None, 103_000_000),
    Resource("hub_vit_s16_fe", "https://tfhub.dev/sayakpaul/vit_s16_fe/1", "vit_s16_fe"),
    Resource("hub_vit_s16_classification", "https://tfhub.dev/sayakpaul/vit_s16_classification/1", "vit_s16_classification"),
    Resource("resnet50_imagenet", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
             "resnet50_weights_tf_dim_ordering_tf_kernels.h5", "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
             None, 102_967_424),
    Resource("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-batches-py",
             None, 170_498_071),
]}

OFFLINE_HINT = (
    "Offline alternatives: run `make report PROFILE=smoke` (synthetic data and tiny generated models, "
    "no network); or fetch the files on a connected machine and point vitwatch at them "
    "(Stanford Dogs archives: parameter dogs_archives_dir; ViT checkpoint: vit_checkpoint=/path/to/file.npz; "
    "TF Hub model: hub_handle=/path/to/extracted/savedmodel; or copy them into the cache folder)."
)


class DownloadError(RuntimeError):
    """A resource could not be fetched; the message names the URL and the alternatives."""


def cache_subdir(cache_dir: str | Path, sub: str = "downloads") -> Path:
    path = Path(cache_dir).expanduser() / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(name: str, cache_dir: str | Path, retries: int = 3, local_dir: str | Path | None = None,
          verify: bool = True) -> Path:
    """Return the local path of resource ``name``, downloading it (with retries) if needed.

    ``local_dir``: a folder where the user put the file by hand; used first when it holds it, and
    checked against the published checksum unless ``verify=False`` (the generated stand-ins).
    """
    import keras

    res = RESOURCES[name]
    if local_dir:
        candidate = Path(local_dir).expanduser() / res.fname
        if candidate.exists():
            if verify:
                _check_sha256(candidate, res)
            return candidate
    target = cache_subdir(cache_dir)
    last = None
    for attempt in range(retries):
        try:
            path = keras.utils.get_file(fname=res.fname, origin=res.url, file_hash=res.sha256,
                                        hash_algorithm="sha256", cache_dir=str(target), cache_subdir=".")
            return Path(path)
        except Exception as exc:  # network, HTTP 403/5xx, checksum mismatch
            last = exc
            time.sleep(2 ** attempt)
    raise DownloadError(f"could not download {res.url} ({type(last).__name__}: {last}) after {retries} tries.\n{OFFLINE_HINT}")


def _check_sha256(path: Path, res: Resource) -> None:
    """A file put in place by hand must be the published one (a checksum is known for it)."""
    if not res.sha256:
        return
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != res.sha256:
        raise DownloadError(f"{path} is not the published {res.fname} (SHA-256 {h.hexdigest()[:12]}... expected "
                            f"{res.sha256[:12]}...): re-download it from {res.url}")


def is_cached(name: str, cache_dir: str | Path, local_dir: str | Path | None = None) -> bool:
    res = RESOURCES[name]
    dirs = [Path(cache_dir).expanduser() / "downloads"] + ([Path(local_dir).expanduser()] if local_dir else [])
    return any((d / res.fname).exists() for d in dirs)


def reachable(url: str, timeout: float = 8.0) -> tuple[bool, str]:
    """HEAD the URL (following redirects); (ok, reason)."""
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "vitwatch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status < 400, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        # Some hosts refuse HEAD (405) but serve GET: count it as reachable.
        return exc.code in (405, 501), f"HTTP {exc.code}"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


def preflight(names: list[str], cache_dir: str | Path, local_dir: str | Path | None = None) -> None:
    """Raise :class:`DownloadError` naming every needed resource neither cached nor reachable."""
    failed = []
    for name in names:
        if is_cached(name, cache_dir, local_dir):
            continue
        ok, why = reachable(RESOURCES[name].url)
        if not ok:
            failed.append(f"  - {name}: {RESOURCES[name].url} ({why})")
    if failed:
        raise DownloadError("these downloads are needed and could not be reached:\n" + "\n".join(failed) + "\n" + OFFLINE_HINT)

"""ViT-S/16 from TF Hub in a Keras 3 model: the seed report's route, done the Keras 3 way.

The seed used ``hub.KerasLayer("https://tfhub.dev/sayakpaul/vit_s16_fe/1")``. ``hub.KerasLayer``
is a Keras 2 (tf_keras) layer and cannot live in a Keras 3 model (TF >= 2.16), so this module
resolves the handle to a local SavedModel itself and wraps its ``serving_default`` signature in
``keras.layers.TFSMLayer``, frozen or trainable. The real model takes 224x224x3 float32 images
in [-1, 1] and returns 384-d class-token features. :func:`export_savedmodel` writes a SavedModel
with the same signature from our Keras ViT, which tests and the smoke profile load through the
very same code.

Resolving a handle (:func:`resolve`), in order: a local folder; the extracted SavedModel in
``<cache>/downloads/<name>/``; ``<handle>?tf-hub-format=compressed`` (the .tar.gz of the
SavedModel that ``tensorflow_hub`` itself fetches, tensorflow_hub/resolver.py) through
:mod:`vitwatch.downloads` (timeouts, retries, resume, atomic extraction); then the same model on
Kaggle Models through ``kagglehub.model_download`` (tfhub.dev now redirects there and answers
persistent 403s to some clients, tensorflow/hub#922, #932). Any failure of one route is caught
and the next tried; when all fail, one :class:`~vitwatch.downloads.DownloadError` names each.

``tensorflow_hub`` is not imported: its last release (0.16.1) imports ``pkg_resources`` at
import time (``tensorflow_hub/__init__.py``), which setuptools removed in 82.0.0, so on a fresh
Python 3.12 environment the import fails (tensorflow/hub#934). The package stays a dependency
(the client named it, and users may load ``tensorflow_hub`` in their own cells);
``pyproject.toml`` therefore pins ``setuptools<81`` on every Python (81 still has
``pkg_resources`` but its warning asks for ``<81``), which keeps that import working: a fresh 3.12
environment otherwise gets setuptools 82+ through TensorFlow's requirement, and a 3.10/3.11
environment whose setuptools was upgraded breaks the same way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras

from vitwatch import downloads


def _resource(handle: str) -> downloads.Resource:
    """The downloads.RESOURCES entry of a TF Hub URL, or an ad-hoc one for another handle."""
    res = next((r for r in downloads.RESOURCES.values() if r.url == handle), None)
    if res is not None:
        return res
    slug = "-".join(p for p in handle.split("://", 1)[-1].split("/") if p)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in slug)
    return downloads.Resource(
        f"hub:{slug}",
        handle,
        slug,
        extract=True,
        archive=f"{slug}.tar.gz",
        query="tf-hub-format=compressed",
        expect="saved_model.pb",
        optional=True,
    )


def _default_cache() -> Path:
    return Path(os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache" / "vitwatch")


def _find_savedmodel(folder: Path, depth: int = 3) -> Path | None:
    """``folder`` or the shallowest folder below it holding ``saved_model.pb``."""
    for level in range(depth + 1):
        pattern = "/".join(["*"] * level + ["saved_model.pb"])
        found = sorted(Path(folder).glob(pattern))
        if found:
            return found[0].parent
    return None


def _kaggle(res: downloads.Resource, cache_dir: Path) -> Path:
    """The same SavedModel through Kaggle Models (``kagglehub``, imported only here)."""
    if not res.kaggle:
        raise RuntimeError("no Kaggle Models handle is known for it")
    os.environ.setdefault("KAGGLEHUB_CACHE", str(cache_dir / "kagglehub"))
    import kagglehub

    folder = _find_savedmodel(Path(kagglehub.model_download(res.kaggle)))
    if folder is None:
        raise RuntimeError(f"kagglehub.model_download({res.kaggle!r}) holds no saved_model.pb")
    return folder


def resolve(
    handle: str,
    retries: int = downloads.RETRIES,
    cache_dir: str | os.PathLike | None = None,
    timeout: tuple[float, float] = (downloads.CONNECT_TIMEOUT, downloads.READ_TIMEOUT),
) -> Path:
    """Local folder of the SavedModel behind ``handle`` (a TF Hub handle/URL or a local path).

    Downloads go under ``<cache_dir>/downloads/`` (default ``$VITWATCH_CACHE`` or
    ``~/.cache/vitwatch``), where a user may also drop an extracted SavedModel under the
    ``downloads.RESOURCES`` name (``vit_s16_fe/``). Raises
    :class:`vitwatch.downloads.DownloadError` naming the handle, why each route failed and the
    alternatives.
    """
    local = Path(str(handle)).expanduser()
    if local.exists() or not str(handle).startswith(("http://", "https://", "gs://")):
        if not (local / "saved_model.pb").is_file():
            raise FileNotFoundError(
                f"hub_handle {handle!r}: no SavedModel there (expected "
                f"{local / 'saved_model.pb'}); give a TF Hub URL or the "
                "folder of an extracted SavedModel"
            )
        return local
    cache = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache()
    res = _resource(str(handle))
    alias = downloads.cache_subdir(cache) / res.fname
    if (alias / "saved_model.pb").is_file():
        return alias
    failures = []
    try:
        return (
            downloads.fetch(res.name, cache, retries=retries, timeout=timeout)
            if res.name in downloads.RESOURCES
            else _fetch_adhoc(res, cache, retries, timeout)
        )
    except (downloads.DownloadError, ValueError, OSError) as exc:
        failures.append(f"tfhub.dev: {str(exc).splitlines()[0].rstrip('.')}")
    try:
        return _kaggle(res, cache)
    except Exception as exc:  # any kagglehub failure: auth, 403, network, import
        failures.append(
            f"Kaggle Models ({res.kaggle or 'no handle'}): "
            f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0].rstrip('.')}"
        )
    raise downloads.DownloadError(
        f"could not get the SavedModel of TF Hub handle {handle}:\n  - "
        + "\n  - ".join(failures)
        + f"\nHand it in: extract {res.download_url} into {alias}/ (or give "
        f"hub_handle=/path/to/extracted/savedmodel).\n{downloads.OFFLINE_HINT}",
        url=res.download_url,
        cause="hub",
    )


def _fetch_adhoc(res, cache: Path, retries, timeout) -> Path:
    """fetch() for a handle that is not in downloads.RESOURCES."""
    folder = downloads.cache_subdir(cache)
    archive = downloads.download(
        res.download_url, folder / res.archive, retries=retries, timeout=timeout
    )
    return downloads.extract(archive, folder / res.fname, res.expect)


def _single_output(outputs, handle):
    if not isinstance(outputs, dict):
        return outputs
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise ValueError(
        f"hub_handle {handle!r}: serving_default returns several outputs "
        f"({', '.join(outputs)}); expected one feature tensor"
    )


def _input_spec(fn, handle):
    """The one image TensorSpec of a signature (kwargs) or a restored tf.function (args)."""
    import tensorflow as tf

    concrete = fn if hasattr(fn, "structured_input_signature") else fn.concrete_functions[0]
    args, kwargs = concrete.structured_input_signature
    specs = tf.nest.flatten(args) + list(kwargs.values())
    if len(specs) != 1:
        raise ValueError(
            f"hub_handle {handle!r}: serving_default takes {len(specs)} inputs; "
            "expected one image batch"
        )
    spec = specs[0]
    if spec.shape.rank != 4 or spec.shape[-1] != 3:
        raise ValueError(f"hub_handle {handle!r}: input {spec.shape} is not (B, S, S, 3)")
    return spec


def load_hub_backbone(
    handle: str,
    trainable: bool = False,
    retries: int = downloads.RETRIES,
    cache_dir: str | os.PathLike | None = None,
) -> keras.Model:
    """Keras 3 model: images in [-1, 1] (B, S, S, 3) -> features (B, D), via TFSMLayer.

    S is read from the SavedModel's signature (224 for sayakpaul/vit_s16_fe). ``trainable``
    can be flipped later with ``model.trainable = True`` for fine-tuning.
    """
    path = resolve(handle, retries=retries, cache_dir=cache_dir)
    layer = keras.layers.TFSMLayer(
        str(path), call_endpoint="serving_default", trainable=trainable, name="hub_vit"
    )
    spec = _input_spec(layer.call_endpoint_fn, handle)
    img_size = spec.shape[1] or 224
    inputs = keras.Input((img_size, img_size, 3), name="images")
    features = _single_output(layer(inputs), handle)  # (B, D)
    model = keras.Model(inputs, features, name="vit_hub")
    model.trainable = trainable
    return model


def export_savedmodel(model: keras.Model, path, img_size: int | None = None) -> Path:
    """Export a Keras feature extractor as a TF Hub-style SavedModel (written atomically).

    Same interface as sayakpaul/vit_s16_fe: a ``serving_default`` signature taking float32
    images (B, S, S, 3) in [-1, 1] and returning the (B, D) class-token features, with the
    variables recorded as trainable so that TFSMLayer can fine-tune them.
    """
    import tensorflow as tf

    S = img_size or getattr(model, "img_size", None) or model.input_shape[1]
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, S, S, 3), tf.float32, name="inputs")],
    )
    archive.write_out(str(tmp), verbose=False)
    if path.exists():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(path)
    return path

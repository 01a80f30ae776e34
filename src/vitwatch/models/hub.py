"""ViT-S/16 from TF Hub in a Keras 3 model: the seed report's route, done the Keras 3 way.

The seed used ``hub.KerasLayer("https://tfhub.dev/sayakpaul/vit_s16_fe/1")``. ``hub.KerasLayer``
is a Keras 2 (tf_keras) layer and cannot live in a Keras 3 model (TF >= 2.16), so this module
resolves the handle to a local SavedModel with ``tensorflow_hub.resolve`` (retried: tfhub.dev
redirects to Kaggle Models and fails intermittently, tensorflow/hub#932, #922) and wraps its
``serving_default`` signature in ``keras.layers.TFSMLayer``, frozen or trainable.
The real model takes 224x224x3 float32 images in [-1, 1] and returns 384-d class-token
features. :func:`export_savedmodel` writes a SavedModel with the same signature from our Keras
ViT, which tests and the smoke profile load through the very same code.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import keras

from vitwatch import downloads


def _cache_alias(handle: str, cache_dir) -> Path | None:
    """``<cache_dir>/downloads/<fname>`` when ``handle`` is a TF Hub URL of downloads.RESOURCES:
    where a user may drop an extracted SavedModel, and what ``downloads.preflight`` checks."""
    if cache_dir is None:
        return None
    res = next((r for r in downloads.RESOURCES.values() if r.url == handle), None)
    return downloads.cache_subdir(cache_dir) / res.fname if res else None


def resolve(handle: str, retries: int = 3, cache_dir: str | os.PathLike | None = None) -> Path:
    """Local folder of the SavedModel behind ``handle`` (a TF Hub handle/URL or a local path).

    With ``cache_dir``, a SavedModel already under ``<cache_dir>/downloads/`` (by its
    downloads.RESOURCES file name) is used as is; otherwise ``tensorflow_hub`` downloads it to
    ``$TFHUB_CACHE_DIR`` (set to ``<cache_dir>/tfhub`` when unset) and a link is left under
    ``downloads/`` for the preflight. Raises :class:`vitwatch.downloads.DownloadError` naming
    the handle and the offline alternatives when every try failed.
    """
    local = Path(str(handle)).expanduser()
    if local.exists() or not str(handle).startswith(("http://", "https://", "gs://")):
        if not (local / "saved_model.pb").is_file():
            raise FileNotFoundError(f"hub_handle {handle!r}: no SavedModel there (expected "
                                    f"{local / 'saved_model.pb'}); give a TF Hub URL or the "
                                    "folder of an extracted SavedModel")
        return local
    alias = _cache_alias(handle, cache_dir)
    if alias is not None and (alias / "saved_model.pb").is_file():
        return alias
    if cache_dir is not None:
        os.environ.setdefault("TFHUB_CACHE_DIR", str(Path(cache_dir).expanduser() / "tfhub"))
    import tensorflow_hub

    last = None
    for attempt in range(retries):
        try:
            path = Path(tensorflow_hub.resolve(handle))
        except Exception as exc:  # HTTP 403/5xx, DNS, truncated archive
            last = exc
            if attempt + 1 < retries:
                time.sleep(2 ** attempt)
            continue
        if alias is not None and not alias.exists():
            try:
                alias.symlink_to(path, target_is_directory=True)
            except OSError:
                pass                              # a convenience only
        return path
    raise downloads.DownloadError(
        f"could not resolve TF Hub handle {handle} ({type(last).__name__}: {last}) after "
        f"{retries} tries.\n{downloads.OFFLINE_HINT}")


def _single_output(outputs, handle):
    if not isinstance(outputs, dict):
        return outputs
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    raise ValueError(f"hub_handle {handle!r}: serving_default returns several outputs "
                     f"({', '.join(outputs)}); expected one feature tensor")


def _input_spec(fn, handle):
    """The one image TensorSpec of a signature (kwargs) or a restored tf.function (args)."""
    import tensorflow as tf

    concrete = fn if hasattr(fn, "structured_input_signature") else fn.concrete_functions[0]
    args, kwargs = concrete.structured_input_signature
    specs = tf.nest.flatten(args) + list(kwargs.values())
    if len(specs) != 1:
        raise ValueError(f"hub_handle {handle!r}: serving_default takes {len(specs)} inputs; "
                         "expected one image batch")
    spec = specs[0]
    if spec.shape.rank != 4 or spec.shape[-1] != 3:
        raise ValueError(f"hub_handle {handle!r}: input {spec.shape} is not (B, S, S, 3)")
    return spec


def load_hub_backbone(handle: str, trainable: bool = False, retries: int = 3,
                      cache_dir: str | os.PathLike | None = None) -> keras.Model:
    """Keras 3 model: images in [-1, 1] (B, S, S, 3) -> features (B, D), via TFSMLayer.

    S is read from the SavedModel's signature (224 for sayakpaul/vit_s16_fe). ``trainable``
    can be flipped later with ``model.trainable = True`` for fine-tuning.
    """
    path = resolve(handle, retries=retries, cache_dir=cache_dir)
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default",
                                   trainable=trainable, name="hub_vit")
    spec = _input_spec(layer.call_endpoint_fn, handle)
    img_size = spec.shape[1] or 224
    inputs = keras.Input((img_size, img_size, 3), name="images")
    features = _single_output(layer(inputs), handle)           # (B, D)
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
        "serving_default", lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, S, S, 3), tf.float32, name="inputs")])
    archive.write_out(str(tmp), verbose=False)
    if path.exists():                          # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(path)
    return path

"""Grad-CAM [Selvaraju et al., 2017]: where a CNN looks, as a map over its last activation.

Channel weights are the spatial mean of the gradient of a target score with respect to the
activations ``A`` of one layer, and the map is ``ReLU(sum_c weight_c A_c)``. The layer is the
one the registry names for each CNN (``backbone.extra["gradcam_layer"]``: ResNet-50's
``conv5_block3_out``, 7 x 7 at 224 px; BiT's ``post_relu``). The target is either a class score
through a differentiable head (the ImageNet-1k head of :attr:`Backbone.imagenet_logits`, or a
stored dog head, :func:`linear`), or the squared norm of the pooled features: a class-agnostic
map, comparable with the class-agnostic attention rollout of the ViT.
"""

from __future__ import annotations

import numpy as np


class GradCAM:
    """Grad-CAM maps of a Keras CNN at ``layer_name``.

    ``model`` maps preprocessed images to an output (logits, or pooled features); ``head``
    (optional, differentiable) maps that output to class scores, e.g. an ImageNet-1k
    classifier on pooled ResNet features. ``__call__(x, class_index)`` returns (B, h, w) maps
    for the score of ``class_index`` (B,) (default: the predicted class when the model gives
    ``logits`` or has a ``head``; otherwise the squared norm of the pooled output, a
    class-agnostic map, comparable with the class-agnostic attention rollout).
    """

    def __init__(self, model, layer_name: str, head=None, logits: bool = False):
        import keras

        from vitwatch.analysis.representations import find_layer

        inner = model
        for layer in getattr(model, "layers", []):
            if hasattr(layer, "layers"):
                try:
                    find_layer(layer, layer_name)
                    inner = layer
                    break
                except ValueError:
                    pass
        conv = find_layer(inner, layer_name)
        self._inner = keras.Model(inner.inputs[0], [conv.output, inner.output])
        # A spatial output (include_top=False, no pooling) is average-pooled before the head.
        self.head = head
        self.logits = logits
        self.layer_name = layer_name

    def __call__(self, x, class_index=None) -> np.ndarray:
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        with tf.GradientTape() as tape:
            conv, out = self._inner(x, training=False)  # (B, h, w, C), ...
            tape.watch(conv)
            if len(out.shape) == 4:
                out = tf.reduce_mean(out, axis=(1, 2))  # (B, C) pooled
            scores = self.head(out) if self.head is not None else out
            if len(scores.shape) != 2:
                raise ValueError(f"GradCAM: expected (B, K) scores, got {scores.shape}")
            if class_index is not None:
                idx = tf.convert_to_tensor(np.asarray(class_index, dtype=np.int64))
                target = tf.gather(scores, idx, axis=1, batch_dims=1)  # (B,)
            elif self.head is not None or self.logits:
                target = tf.reduce_max(scores, axis=1)  # predicted class
            else:
                target = tf.reduce_sum(scores**2, axis=1)  # class-agnostic
        grads = tape.gradient(target, conv)  # (B, h, w, C)
        if grads is None:
            raise ValueError(
                f"GradCAM: the target does not depend on {self.layer_name!r} "
                "through differentiable operations (a NumPy head?)"
            )
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))  # (B, h, w)
        return cam.numpy()


def linear(kernel, bias):
    """A differentiable linear head ``f @ kernel + bias`` in TensorFlow, e.g. a stored dog head
    (kernel (D, K), bias (K,))."""
    import tensorflow as tf

    k = tf.constant(np.asarray(kernel, np.float32))
    b = tf.constant(np.asarray(bias, np.float32))
    return lambda f: tf.matmul(f, k) + b  # (B, K)


def maps(backbone, x, imagenet_classes=None, batch_size: int = 16):
    """Grad-CAM maps of a CNN registry backbone (ResNet-50, BiT) on preprocessed images ``x``,
    at its ``extra["gradcam_layer"]``.

    Targets the ImageNet-1k logit of each image's true breed (``imagenet_classes``, (n,)) when
    the backbone has an ImageNet head (``imagenet_logits``, differentiable) and every class is
    known; otherwise the squared norm of the pooled features (class-agnostic, like the
    attention rollout). Returns ``(maps (n, h, w), description)``.
    """
    layer = backbone.extra["gradcam_layer"]
    head = backbone.imagenet_logits
    classes = None if imagenet_classes is None else np.asarray(imagenet_classes)
    if head is not None and classes is not None and np.all(classes >= 0):
        cam = GradCAM(backbone.model, layer, head=head)
        out = [
            cam(x[i : i + batch_size], classes[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out), "Grad-CAM of the true breed's ImageNet-1k logit"
    cam = GradCAM(backbone.model, layer)
    out = [cam(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(out), "class-agnostic Grad-CAM (squared norm of pooled features)"


def saliency(backbone, images, imagenet_classes, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The maps of one CNN on uint8 ``images`` (n, S, S, 3) at its input size, named as the
    chapter's tables name them: ``"<label> Grad-CAM"`` (class-agnostic) and, when an ImageNet
    head exists, ``"<label> Grad-CAM, true class"``."""
    from vitwatch.analysis import text

    label = text.label(backbone.name)
    x = np.asarray(backbone.preprocess(images.astype("float32")))
    out = {f"{label} Grad-CAM": maps(backbone, x, None, batch_size)[0]}
    cams, kind = maps(backbone, x, imagenet_classes, batch_size)
    if kind.startswith("Grad-CAM of the true"):
        out[f"{label} Grad-CAM, true class"] = cams
    return out

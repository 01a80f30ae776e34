"""Representation similarity: linear CKA between the layers of two networks.

Follows Kornblith et al. (2019), "Similarity of Neural Network Representations Revisited"
(linear centred kernel alignment), and its use by Raghu et al. (2021), "Do Vision Transformers
See Like Convolutional Neural Networks?", which compares every ViT block with every ResNet stage
using *minibatch* CKA (Nguyen et al., 2021): the unbiased HSIC estimator of Song et al. (2012)
averaged over minibatches, so that activations of any size (a ResNet stage at 224 px is
56 x 56 x 256 per image) never need to be held for all images at once.

What is computed, exactly: ``CKA = sum_b HSIC_u(K_b, L_b) / sqrt(sum_b HSIC_u(K_b, K_b)
sum_b HSIC_u(L_b, L_b))`` over minibatches b, with HSIC_u the unbiased estimator. Unlike the
biased full-batch CKA, which lies in [0, 1], this estimate is not bounded: an unbiased HSIC can
be negative, so a value can fall slightly below 0 (or, with few small batches, above 1).

- :func:`linear_cka` — the exact full-batch value (Kornblith eq. 4), for small inputs and tests.
- :class:`MinibatchCKA` — streams batches of activations of two lists of layers, accumulates
  the unbiased HSIC of every pair, returns the (La, Lb) CKA matrix.
- :func:`vit_block_outputs`, :func:`stage_model` — the activations compared: the token
  sequence after each transformer block ``(B, N, C)``, the output of each CNN stage
  ``(B, h, w, C)`` (the layers the registry names, ``backbone.extra["cka_layers"]``); both
  flattened per image.
- :func:`cka_matrix` — chapter 4's matrix between a ViT's blocks and a CNN's stages on test
  images; :func:`describe` and :func:`describe_matched` say what it shows; :func:`section`
  computes the chapter's matrices at once (:class:`CKA`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _flat(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)  # (B, D)


def gram_linear(x) -> np.ndarray:
    """Linear kernel ``X X^T`` of flattened activations: (B, ...) -> (B, B) float64.

    float32 activations stay float32 for the product (a ResNet stage at 224 px is 0.8 M values
    per image; float64 copies of a batch would take GBs).
    """
    x = np.asarray(x)
    x = x.reshape(x.shape[0], -1)  # (B, D)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    return (x @ x.T).astype(np.float64)


def linear_cka(x, y) -> float:
    """Linear CKA of two activations on the same n images (biased HSIC, Kornblith eq. 4).

    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred X, Y; 1 for identical
    representations, invariant to orthogonal transforms and isotropic scaling.
    """
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same images in both: {x.shape[0]} != {y.shape[0]}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    # Gram form (n x n) is cheaper than the feature form when D >> n.
    kx, ky = x @ x.T, y @ y.T
    num = np.sum(kx * ky)
    den = np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))
    return float(num / den) if den > 0 else 0.0


def hsic_unbiased(k, l) -> float:
    """Unbiased HSIC estimator (Song et al., 2012) of two (n, n) Gram matrices, n > 3."""
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 images per batch, got {n}")
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    kl = k @ l
    term = np.trace(kl) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2.0 * kl.sum() / (n - 2)
    return float(term / (n * (n - 3)))


class MinibatchCKA:
    """Accumulates minibatch linear CKA between layers ``a[i]`` and ``b[j]``.

    >>> acc = MinibatchCKA(n_a=12, n_b=4)
    >>> for batch in ...: acc.update(vit_acts, resnet_acts)   # lists of (B, ...) arrays
    >>> acc.result()                                          # (12, 4)
    """

    def __init__(self, n_a: int, n_b: int):
        self.n_a, self.n_b = n_a, n_b
        self.cross = np.zeros((n_a, n_b))
        self.self_a = np.zeros(n_a)
        self.self_b = np.zeros(n_b)
        self.batches = 0

    def update(self, acts_a, acts_b) -> None:
        if len(acts_a) != self.n_a or len(acts_b) != self.n_b:
            raise ValueError(
                f"expected {self.n_a} and {self.n_b} layers, got {len(acts_a)} and {len(acts_b)}"
            )
        ka = [gram_linear(x) for x in acts_a]  # each (B, B)
        kb = [gram_linear(x) for x in acts_b]
        for i, k in enumerate(ka):
            self.self_a[i] += hsic_unbiased(k, k)
            for j, l in enumerate(kb):
                self.cross[i, j] += hsic_unbiased(k, l)
        for j, l in enumerate(kb):
            self.self_b[j] += hsic_unbiased(l, l)
        self.batches += 1

    def result(self) -> np.ndarray:
        if not self.batches:
            raise ValueError("MinibatchCKA.result() before any update()")
        den = np.sqrt(np.clip(np.outer(self.self_a, self.self_b), 1e-30, None))
        return self.cross / den  # (La, Lb)


# --- activations -----------------------------------------------------------------------------
def vit_block_outputs(model, x) -> list[np.ndarray]:
    """Token sequence after each transformer block, a list of ``(B, N, C)`` arrays.

    Runs ``model.embed`` then ``model.blocks`` one by one (the layout of
    :class:`vitwatch.models.vit.VisionTransformer`); ``x`` is preprocessed, (B, S, S, 3).
    """
    if not (hasattr(model, "embed") and hasattr(model, "blocks")):
        raise ValueError(
            f"vit_block_outputs: model {getattr(model, 'name', model)!r} has no "
            "embed()/blocks (expected a vitwatch.models.vit.VisionTransformer)"
        )
    h = model.embed(np.asarray(x, dtype=np.float32))  # (B, N, C)
    outs = []
    for block in model.blocks:
        h = block(h)  # (B, N, C)
        outs.append(np.asarray(h))
    return outs


def find_layer(model, name: str):
    """A layer by name, searched recursively in nested Keras models."""
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            try:
                return find_layer(layer, name)
            except ValueError:
                pass
    raise ValueError(f"layer {name!r} not found in model {model.name!r}")


def stage_model(model, names):
    """A Keras model returning the named intermediate outputs of a (possibly nested) model."""
    import keras

    inner = model
    for layer in model.layers:
        if hasattr(layer, "layers"):
            try:
                find_layer(layer, names[0])
                inner = layer
                break
            except ValueError:
                pass
    outputs = [find_layer(inner, n).output for n in names]
    return keras.Model(inner.inputs[0], outputs, name=f"{inner.name}_stages")


# --- chapter 4 -------------------------------------------------------------------------------
def cka_matrix(vit_backbone, cnn_backbone, paths, batch_size: int) -> np.ndarray:
    """Minibatch linear CKA between every layer of [ViT blocks..., CNN stages...] on the test
    images at ``paths``: ``vit_backbone.vit``'s blocks, and the stages the registry names for
    the CNN (``cnn_backbone.extra["cka_layers"]``), each backbone on its own input size and
    preprocessing.

    Returns an (L + S, L + S) matrix: the ViT-ViT, CNN-CNN and cross blocks of Raghu et al.
    (2021), Fig. 1 and 2. Batches with fewer than 4 images are dropped (the unbiased HSIC
    needs n > 3).
    """
    from tqdm import tqdm

    from vitwatch.analysis.store import load_images

    vit = vit_backbone.vit
    stages = stage_model(cnn_backbone.model, cnn_backbone.extra["cka_layers"])
    bs = max(batch_size, 4)
    acc = None
    for i in tqdm(range(0, len(paths), bs), desc="CKA", leave=False):
        chunk = paths[i : i + bs]
        if len(chunk) < 4:
            break
        xv = load_images(chunk, vit_backbone.img_size).astype("float32")
        xc = load_images(chunk, cnn_backbone.img_size).astype("float32")
        acts = vit_block_outputs(vit, np.asarray(vit_backbone.preprocess(xv)))  # L x (B, N, C)
        acts += [np.asarray(a) for a in stages(np.asarray(cnn_backbone.preprocess(xc)))]
        if acc is None:
            acc = MinibatchCKA(len(acts), len(acts))
        acc.update(acts, acts)
    if acc is None:
        raise ValueError(f"CKA needs at least 4 images, got {len(paths)} (n_cka_images)")
    return acc.result()


def stage_labels(layers) -> list[str]:
    """Axis labels of CNN stages: ResNet-50's ``conv2_block3_out`` -> "stage 2", BiT's
    ``block1_out`` -> "block 1"."""
    return [n.split("_")[0].replace("conv", "stage ").replace("block", "block ") for n in layers]


def describe(sim, depth: int, stage_names) -> str:
    """Which CNN stage the first and last ViT blocks resemble most, the mean cross CKA of the
    first and last thirds of the blocks, and how similar adjacent ViT blocks are."""
    cross = sim[:depth, depth:]
    best_stage = cross.argmax(axis=1)
    third = max(1, depth // 3)
    early, late = cross[:third].mean(), cross[-third:].mean()
    adjacent = float(np.mean(np.diag(sim[:depth, :depth], 1))) if depth > 1 else 1.0
    return (
        f"The first ViT block is closest to {stage_names[best_stage[0]]} and the last to "
        f"{stage_names[best_stage[-1]]}; mean CKA with the ResNet stages is {early:.2f} for "
        f"the first third of the blocks and {late:.2f} for the last third. Adjacent ViT "
        f"blocks have a mean CKA of {adjacent:.2f}"
        + (", a uniform stack, as Raghu et al. observed." if adjacent > 0.8 else ".")
    )


def describe_matched(sim, sim_matched, depth: int, label: str) -> str:
    """The ViT's mean CKA with a CNN pre-trained on its data (``sim_matched``) against that
    with ResNet-50 (``sim``): is the matched CNN closer?"""
    m, r = sim_matched[:depth, depth:].mean(), sim[:depth, depth:].mean()
    return (
        f"Mean CKA of the ViT blocks with the four stages of {label}: {m:.2f}, against "
        f"{r:.2f} with ResNet-50's; a CNN pre-trained on the ViT's data is "
        + ("closer to" if m > r else "no closer to")
        + " the ViT's representations on these images."
    )


@dataclass
class CKA:
    """The section "Representations": per CNN (backbone name, ResNet-50 first, then the CNN
    pre-trained like the ViT, ``matched``, when it ran) the CKA ``matrices`` of
    :func:`cka_matrix` and the ``layers`` names of its stages; ``depth`` ViT blocks named
    ``vit_layers``, on ``n_images`` test images."""

    depth: int
    vit_layers: list[str]
    matrices: dict[str, np.ndarray]
    layers: dict[str, list[str]]
    n_images: int
    matched: str | None = None

    @property
    def cnn(self) -> str:
        return next(iter(self.matrices))

    @property
    def sentence(self) -> str:
        return describe(self.matrices[self.cnn], self.depth, self.layers[self.cnn])

    @property
    def matched_sentence(self) -> str:
        """The ViT's CKA with the matched CNN against that with ResNet-50, or why not."""
        if self.matched is None:
            return (
                "No CNN pre-trained on the ViT's data (BiT) is in the results store: its CKA "
                "is skipped."
            )
        from vitwatch.analysis import text

        sim, sim_matched = self.matrices[self.cnn], self.matrices[self.matched]
        return describe_matched(sim, sim_matched, self.depth, text.label(self.matched))

    def _entry(self, name: str) -> dict:
        return {
            "matrix": self.matrices[name].tolist(),
            "layers": self.vit_layers + self.layers[name],
        }

    @property
    def record(self) -> dict:
        out = {"cka": self._entry(self.cnn)}
        if self.matched is not None:
            out["cka_bit"] = {"backbone": self.matched, **self._entry(self.matched)}
        return out


def section(store, vit, cnn, matched, n_images: int, batch_size: int, seed: int) -> CKA:
    """:class:`CKA` of the backbone ``vit`` against ``cnn`` and, unless None, ``matched`` (a
    CNN pre-trained on the ViT's data), on ``n_images`` test images drawn with ``seed``."""
    from vitwatch.analysis.store import subset

    paths = [store.paths[i] for i in subset(store.labels.size, n_images, seed)]
    depth = vit.vit.depth
    out = CKA(depth, [f"block {i + 1}" for i in range(depth)], {}, {}, len(paths))
    for bb in (cnn, matched):
        if bb is not None:
            out.matrices[bb.name] = cka_matrix(vit, bb, paths, batch_size)
            out.layers[bb.name] = stage_labels(bb.extra["cka_layers"])
    out.matched = None if matched is None else matched.name
    return out

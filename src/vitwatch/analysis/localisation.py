"""Does a saliency map find the dog? Bounding boxes, map mass inside them, Grad-CAM, centre prior.

Holds the measurements of notebook 04's localisation section:

- the boxes, in the photo's pixels, carried onto any grid: :mod:`vitwatch.analysis.boxes`;
- :func:`mass_inside` — share of a non-negative saliency map's mass inside the union of boxes
  (the "energy-based pointing game" of Wang et al., 2020, Score-CAM); :func:`pointing_hit` —
  the pointing game of Zhang et al. (2018, "Top-down neural attention by excitation
  backprop", IJCV): a hit when the *centre* of the map's peak cell, in image pixels, lies
  within a tolerance of **15 pixels** of a box (their tolerance).
- :func:`to_grid` — a map resampled (mass-preserving block average) onto another grid, so
  that maps of different resolutions (a 14 x 14 rollout, a 7 x 7 Grad-CAM) are scored on one
  common grid and neither is favoured by its resolution.
- :func:`centre_prior` — an isotropic Gaussian centred on the frame: the baseline any map must
  beat, since photographers centre the dog.
- :func:`summarise`, :func:`table`, :func:`differences`, :func:`describe` — the chapter's
  summary of :func:`evaluate`'s long table: mean mass inside with bootstrap intervals, pointing
  hits, and paired differences between maps (every verdict from a paired interval);
  :func:`section` — the chapter's section in one call (:class:`Localisation`).

Grad-CAM, the CNNs' maps, is in :mod:`vitwatch.analysis.gradcam`.

Maps are ``(h, w)`` arrays on any grid; for measurements each cell is spread uniformly over
the pixels it covers (nearest-neighbour upsampling to the mask resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch.analysis.boxes import box_distance, box_mask, scale_boxes


# --- maps ------------------------------------------------------------------------------------
def upsample(saliency, shape: tuple[int, int], order: int = 0) -> np.ndarray:
    """Resize a (h, w) map to ``shape``. ``order=0`` (default, used for every measurement):
    each cell's value covers its block of pixels, as a patch token covers its 16 x 16 patch;
    ``order=1``: bilinear, smoother, for display only."""
    from skimage.transform import resize

    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    if s.shape == tuple(shape):
        return s
    return resize(s, shape, order=order, mode="edge", anti_aliasing=False)


def normalise(saliency) -> np.ndarray:
    """Non-negative map summing to 1 (a uniform map if it is all zero)."""
    s = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    total = s.sum()
    return s / total if total > 0 else np.full(s.shape, 1.0 / s.size)


def mass_inside(saliency, mask) -> float:
    """Share of the (non-negative part of the) map's mass that lies inside ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    return float(normalise(upsample(saliency, mask.shape))[mask].sum())


POINTING_TOLERANCE = 15.0  # pixels, the tolerance of Zhang et al. (2018)


def peak_centre(saliency, frame_hw) -> tuple[float, float]:
    """(x, y) in pixels of a ``frame_hw`` = (H, W) image: centre of the map's highest cell
    (first in row-major order on ties). A cell of an (h, w) map covers H / h x W / w pixels."""
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    i, j = np.unravel_index(int(np.argmax(s)), s.shape)
    hh, ww = frame_hw
    return (j + 0.5) * ww / s.shape[1], (i + 0.5) * hh / s.shape[0]


def pointing_hit(saliency, boxes, frame_hw, tolerance: float = POINTING_TOLERANCE) -> bool:
    """Pointing game [Zhang et al., 2018]: the centre of the map's peak cell lies within
    ``tolerance`` pixels of a box. ``boxes`` (k, 4) xyxy and ``frame_hw`` (H, W) are in the
    pixels of the image the map covers (e.g. the original photo, for a squashed input)."""
    if tolerance < 0:
        raise ValueError(f"pointing_hit: tolerance must be >= 0 pixels, got {tolerance}")
    return box_distance(peak_centre(saliency, frame_hw), boxes) <= tolerance


def to_grid(saliency, shape: tuple[int, int]) -> np.ndarray:
    """A (h, w) map on an (H, W) grid by area averaging (coarser) or nearest cells (finer).

    When the grids divide each other, coarsening is an exact block mean, so the share of the
    mass in any union of coarse cells is preserved (a 14 x 14 rollout -> 7 x 7: 2 x 2 blocks).
    """
    from skimage.measure import block_reduce

    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    shape = tuple(int(v) for v in shape)
    if s.shape == shape:
        return s
    if all(a % b == 0 for a, b in zip(s.shape, shape)):
        return block_reduce(s, (s.shape[0] // shape[0], s.shape[1] // shape[1]), np.mean)
    from skimage.transform import resize

    coarser = all(a >= b for a, b in zip(s.shape, shape))
    return resize(s, shape, order=1 if coarser else 0, mode="edge", anti_aliasing=coarser)


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """Isotropic Gaussian centred on the frame; ``sigma`` as a fraction of each side."""
    if sigma <= 0:
        raise ValueError(f"centre_prior: sigma must be > 0, got {sigma}")
    ys = (np.arange(height) + 0.5) / height - 0.5
    xs = (np.arange(width) + 0.5) / width - 0.5
    g = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def evaluate(
    maps: dict[str, np.ndarray],
    boxes_list,
    sizes,
    grid: int = 112,
    common_grid: tuple[int, int] | None = None,
    tolerance: float = POINTING_TOLERANCE,
):
    """Mass inside the boxes and pointing hits of several families of maps, per image.

    ``maps``: name -> (n, h, w) maps (any grid per family); ``boxes_list``: n arrays of (k, 4)
    boxes in the pixels of the frame each map covers; ``sizes``: n (width, height) of that frame.
    ``common_grid`` (h, w): every family is first resampled onto it (:func:`to_grid`), so that
    all are scored at one resolution. Mass is measured on a ``grid`` x ``grid`` pixel mask; the
    pointing game in frame pixels with ``tolerance``. Adds the ``centre prior`` (peak at the
    frame centre) and ``uniform`` (= box area share) baselines. Returns a long DataFrame with
    columns ``image``, ``map``, ``mass_inside``, ``hit``, ``box_fraction``.
    """
    import pandas as pd

    n = len(boxes_list)
    for name, m in maps.items():
        if len(m) != n:
            raise ValueError(f"localisation.evaluate: {len(m)} {name} maps for {n} images")
    prior = centre_prior(grid, grid)
    rows = []
    for i in range(n):
        w, h = sizes[i]
        mask = box_mask(scale_boxes(boxes_list[i], sizes[i], grid), grid, grid)
        frac = float(mask.mean())
        for name, m in maps.items():
            mi = to_grid(m[i], common_grid) if common_grid is not None else m[i]
            rows.append(
                {
                    "image": i,
                    "map": name,
                    "mass_inside": mass_inside(mi, mask),
                    "hit": pointing_hit(mi, boxes_list[i], (h, w), tolerance),
                    "box_fraction": frac,
                }
            )
        centre_hit = box_distance((w / 2, h / 2), boxes_list[i]) <= tolerance
        rows.append(
            {
                "image": i,
                "map": "centre prior",
                "mass_inside": float(prior[mask].sum()),
                "hit": bool(centre_hit),
                "box_fraction": frac,
            }
        )
        rows.append(
            {"image": i, "map": "uniform", "mass_inside": frac, "hit": np.nan, "box_fraction": frac}
        )
    return pd.DataFrame(rows)


# --- chapter 4: summaries and paired comparisons of maps -------------------------------------
def coarsest_grid(maps: dict[str, np.ndarray]) -> tuple[int, int]:
    """The (h, w) grid with the fewest cells among families of (n, h, w) maps: every family is
    resampled onto it before scoring, so that no map is favoured by its resolution."""
    return tuple(min((np.asarray(m).shape[1:] for m in maps.values()), key=lambda s: s[0] * s[1]))


def summarise(loc, n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """map -> (mean, lo, hi) share of mass inside the boxes over the images of
    :func:`evaluate`'s table, with a percentile-bootstrap 95 % interval."""
    from vitwatch import stats

    return {
        m: stats.bootstrap_mean(grp["mass_inside"].to_numpy(), n_boot, seed)
        for m, grp in loc.groupby("map", sort=False)
    }


def table(summary, loc):
    """Mass inside (%) with its CI and pointing-game hit rate (%) per map."""
    import pandas as pd

    shares = pd.DataFrame(
        {
            m: {"mass inside (%)": 100 * v[0], "CI low": 100 * v[1], "CI high": 100 * v[2]}
            for m, v in summary.items()
        }
    ).T.round(1)
    hits = 100 * loc.groupby("map")["hit"].mean().rename("pointing hits (%)")
    return shares.join(hits)


def grid_note(grid: tuple[int, int], tolerance: float = POINTING_TOLERANCE) -> str:
    return (
        f"All maps scored on a common {grid[0]} x {grid[1]} grid; pointing game: peak "
        f"cell centre within {tolerance:.0f} px of a box."
    )


def differences(loc, ref: str = "ViT rollout", others=None, n_boot: int = 1000, seed: int = 0):
    """Paired differences of the share of mass inside the boxes, ``ref`` minus each other map,
    on the same images (:func:`evaluate`'s long table), with percentile CIs from a bootstrap
    over images. One row per other map: ``map``, ``diff``, ``lo``, ``hi``, ``n``; also the
    pointing-game difference (``hit_diff``, ``hit_lo``, ``hit_hi``) where both maps have a
    peak."""
    import pandas as pd

    from vitwatch import stats

    wide = loc.pivot(index="image", columns="map", values="mass_inside")
    hits = loc.pivot(index="image", columns="map", values="hit")
    if ref not in wide:
        raise ValueError(
            f"localisation.differences: no {ref!r} maps in the table (maps: {list(wide.columns)})"
        )
    order = list(dict.fromkeys(loc["map"]))  # as in the table
    others = [m for m in (others or order) if m != ref and m in wide]
    rows = []
    for m in others:
        d = wide[ref].to_numpy() - wide[m].to_numpy()  # (n,) paired
        row = {
            "map": m,
            "n": d.size,
            **dict(zip(("diff", "lo", "hi"), stats.bootstrap_mean(d, n_boot, seed))),
        }
        h = hits[[ref, m]].dropna()
        if len(h):
            hd = h[ref].astype(float).to_numpy() - h[m].astype(float).to_numpy()
            row.update(
                zip(("hit_diff", "hit_lo", "hit_hi"), stats.bootstrap_mean(hd, n_boot, seed))
            )
        rows.append(row)
    return pd.DataFrame(rows)


def describe(summary, diffs=None, ref: str = "ViT rollout") -> str:
    """summary: map -> (mean, lo, hi) share of mass inside the boxes; ``diffs``: the paired
    differences of :func:`differences`, from which every verdict is drawn (separate intervals
    of paired measurements are never compared)."""
    from vitwatch.analysis import text

    parts = [
        f"{m} {100 * v[0]:.0f} % [{100 * v[1]:.0f}, {100 * v[2]:.0f}]" for m, v in summary.items()
    ]
    out = "Share of the map's mass inside the boxes (mean, 95 % CI): " + "; ".join(parts) + "."
    if diffs is None or not len(diffs):
        return out
    clauses = []
    for _, r in diffs.iterrows():
        if r["map"] == "uniform":
            continue
        verdict = text.paired_verdict(
            r["lo"],
            r["hi"],
            "more of its mass on the dog than",
            "less of its mass on the dog than",
            "a share that cannot be told apart from that of",
        )
        clauses.append(
            f"{verdict} the {r['map']} (paired difference "
            f"{100 * r['diff']:+.1f} points [{100 * r['lo']:+.1f}, "
            f"{100 * r['hi']:+.1f}] over {int(r['n'])} images)"
        )
    if clauses:
        out += f" The {ref} puts " + "; ".join(clauses) + "."
    return out


@dataclass
class Localisation:
    """The section "Does attention find the dog?": the saliency ``maps`` (name -> (n, h, w)),
    the common ``grid`` they are scored on, :func:`evaluate`'s long ``table``, its ``summary``
    (:func:`summarise`), the paired ``diffs`` against the ViT rollout (:func:`differences`) and
    the ``examples`` figure's (images, boxes on them, maps with the centre prior)."""

    maps: dict[str, np.ndarray]
    grid: tuple[int, int]
    table: object
    summary: dict[str, tuple[float, float, float]]
    diffs: object
    examples: tuple

    @property
    def tables(self) -> list:
        return [table(self.summary, self.table).style.format(precision=1, na_rep="–")]

    @property
    def note(self) -> str:
        return grid_note(self.grid)

    @property
    def sentence(self) -> str:
        return describe(self.summary, self.diffs)

    @property
    def record(self) -> dict:
        return {
            "localisation": {
                "summary": {m: list(v) for m, v in self.summary.items()},
                "paired": self.diffs.to_dict(orient="records"),
            }
        }


def section(
    store, positions, images, rollout, cnns, batch_size: int, n_boot: int, seed: int, n_show=4
) -> Localisation:
    """:class:`Localisation` of the test images at ``positions``: the ViT's attention
    ``rollout`` (n, g, g) over ``images`` (uint8 (n, S, S, 3), as the ViT saw them) against
    the Grad-CAMs of each CNN backbone of ``cnns`` (None entries skipped), every map resampled
    onto the coarsest grid; the first ``n_show`` images make the examples figure."""
    from vitwatch.analysis import gradcam

    boxes, sizes = store.boxes(positions), store.image_sizes(positions)
    maps = {"ViT rollout": rollout}
    for bb in (c for c in cnns if c is not None):
        maps.update(
            gradcam.saliency(
                bb,
                store.images(positions, bb.img_size),
                store.imagenet_classes(positions),
                batch_size,
            )
        )
    grid = coarsest_grid(maps)
    loc = evaluate(maps, boxes, sizes, common_grid=grid)
    shown = np.arange(min(n_show, len(positions)))
    g = np.asarray(rollout).shape[1]  # the ViT's patch grid
    examples = (
        images[shown],
        [scale_boxes(boxes[i], sizes[i], images.shape[1]) for i in shown],
        {
            **{m: np.asarray(v)[shown] for m, v in maps.items()},
            "centre prior": [centre_prior(g, g)] * len(shown),
        },
    )
    return Localisation(
        maps,
        grid,
        loc,
        summarise(loc, n_boot, seed),
        differences(loc, "ViT rollout", n_boot=n_boot, seed=seed),
        examples,
    )

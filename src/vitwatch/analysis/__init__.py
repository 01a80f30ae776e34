"""Chapter 4 (notebook 04): can we trust that the ViT wins? The results store of chapter 3,
read, measured and put into words; nothing is retrained here.

One module per section of the chapter, in its order; each holds the measurement, the table as
a reader sees it and the sentence that states what the numbers say, whatever they are, and a
``section(...)`` that computes and summarises the section in one call. What it returns shows
the section with the same names everywhere: ``tables`` (to display, none when there is nothing
to show), ``sentence`` (and ``note``, the line under a table), the data of its figures, and
``record``, its numbers for ``analysis.json`` (:func:`vitwatch.analysis.store.save_summary`).

- :mod:`~vitwatch.analysis.store` — the results store as 04 reads it, choices on validation;
- :mod:`~vitwatch.analysis.accuracy` — accuracies with intervals, the paired ViT-CNN test;
- :mod:`~vitwatch.analysis.power` — the smallest difference each test set can resolve;
- :mod:`~vitwatch.analysis.calibration` — ECE, NLL, Brier, temperature scaling;
- :mod:`~vitwatch.analysis.errors` — per-breed accuracy, confusions, error galleries;
- :mod:`~vitwatch.analysis.vit_attention` — rollout, per-head maps, attention distances;
- :mod:`~vitwatch.analysis.localisation` and :mod:`~vitwatch.analysis.gradcam` — does a
  saliency map find the dog (the boxes in any frame: :mod:`~vitwatch.analysis.boxes`);
  :mod:`~vitwatch.analysis.box_size` — small dogs;
- :mod:`~vitwatch.analysis.cost` — parameters, MACs, throughput;
- :mod:`~vitwatch.analysis.leakage` — test images ImageNet-1k trained on;
- :mod:`~vitwatch.analysis.matched` — matched pre-training, the attribution of the lead;
- :mod:`~vitwatch.analysis.representations` — CKA between ViT blocks and CNN stages;
- :mod:`~vitwatch.analysis.text` — the wording they share.

Intervals over head seeds are :mod:`vitwatch.seeds`'s, statistics :mod:`vitwatch.stats`'s.
"""

from vitwatch.analysis import (  # noqa: F401  (analysis.<module>.<function>)
    accuracy,
    box_size,
    boxes,
    calibration,
    cost,
    errors,
    gradcam,
    leakage,
    localisation,
    matched,
    power,
    representations,
    store,
    text,
    vit_attention,
)

"""Notebook 05: small models trained from scratch over training-set sizes and seeds.

The question behind Figures 3 and 4 of [Dosovitskiy et al., 2021], in miniature: the same
models trained on nested, stratified subsets of growing size; test accuracy against the number
of training images, mean and 95 % t-interval over seeds, one curve per model. Comparisons
between models are paired by seed (:func:`vitwatch.stats.paired_gaps`): one seed draws the
subset, the batch order and the augmentation stream for every model, and each model's
initialisation.

The flow, one module each:

- :mod:`.recipe`: the optimisation settings shared by every model and size (:class:`Recipe`);
- :mod:`.trainer`: one compiled training loop per model, reused by every run (:class:`Trainer`);
- :mod:`.stacked`: several runs of one model trained as one program, for a GPU;
- :mod:`.grid`: every (model, size, seed) run, cached in the results store and resumable
  (:func:`run_grid`), their summary over seeds (:func:`aggregate`, :func:`save_summary`);
- :mod:`.sentences` and :mod:`.tables`: what the report says and shows, from the numbers;
- :mod:`.estimates`: how long each profile's grid takes, on this CPU and on a GPU.
"""

from vitwatch.inductive.estimates import format_hours, profile_estimates
from vitwatch.inductive.grid import aggregate, run_grid, save_summary
from vitwatch.inductive.recipe import Recipe, recipe, scale_for
from vitwatch.inductive.sentences import describe, verdict

__all__ = [
    "Recipe",
    "aggregate",
    "describe",
    "format_hours",
    "profile_estimates",
    "recipe",
    "run_grid",
    "save_summary",
    "scale_for",
    "verdict",
]

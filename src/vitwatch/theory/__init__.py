"""The theory chapters (00-02): the code their notebooks teach with, and the published numbers.

- :mod:`~vitwatch.theory.published`: the ViT paper's numbers quoted by chapters 00 and 02
  (each with its table or figure);
- :mod:`~vitwatch.theory.attention`: attention in NumPy (chapter 01), and the analyses of a
  ViT's attention maps that chapter 04 (:mod:`vitwatch.analysis.vit_attention`) and the
  explorer of chapter 06 use (rollout, class-token maps, attention distance);
- :mod:`~vitwatch.theory.toy_language`: the tiny Transformer trained in chapter 01;
- :mod:`~vitwatch.theory.patches`: patches, patch embedding and position embeddings
  (chapter 02).

Notebooks import the modules by name: ``from vitwatch.theory import attention, patches``.
"""

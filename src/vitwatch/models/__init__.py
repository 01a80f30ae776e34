"""The backbones of the report: our Keras ViT, the TF Hub ViT, ResNet-50, and their registry.

- ``vit``: a readable Keras 3 ViT returning features, logits and every block's attention;
  reads and writes Google's .npz checkpoints (google-research/vision_transformer).
- ``hub``: the seed's TF Hub route in Keras 3 (``hub.resolve`` + ``keras.layers.TFSMLayer``).
- ``resnet``: ``keras.applications.ResNet50`` with caffe preprocessing.
- ``resnetv2``: BiT's ResNetV2 (group norm, weight standardisation) in Keras 3; reads Google's
  BiT .npz checkpoints (google-research/big_transfer).
- ``registry``: ``backbone(name, cfg) -> Backbone`` for any row of
  :data:`vitwatch.catalogue.BACKBONES`; ``required_resources(cfg)`` for the preflight.
- ``offline``: the generated tiny checkpoint and SavedModel of the smoke profile and tests.
"""

from vitwatch.models import hub, offline, registry, resnet, resnetv2, vit  # noqa: F401

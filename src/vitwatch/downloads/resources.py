"""The file to open to add a download: every file vitwatch fetches from the network, one
:class:`Resource` each in :data:`RESOURCES` (URL, file name, published digest, size, archive
layout, Kaggle fallback, optional or not)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One downloadable file. ``url``: what a parameter names (for TF Hub: the handle);
    ``fname``: its name under ``downloads/`` (for archives with ``extract``: the extracted
    folder, the archive itself being ``archive``); ``size``: bytes, for messages only."""

    name: str
    url: str
    fname: str
    sha256: str | None = None
    size: int | None = None
    extract: bool = False
    md5: str | None = None
    archive: str | None = None  # archive file name when ``extract``
    query: str = ""  # appended to ``url`` for the download itself
    expect: str | None = None  # a file the extracted folder must hold
    kaggle: str | None = None  # kagglehub model handle of the same files (fallback)
    optional: bool = False  # the report goes on without it

    @property
    def download_url(self) -> str:
        return self.url + (("&" if "?" in self.url else "?") + self.query if self.query else "")

    @property
    def file(self) -> str:
        """Name of the downloaded file under ``downloads/``."""
        return self.archive if self.extract else self.fname


_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
_VIT = "https://storage.googleapis.com/vit_models/augreg/"
_S16 = "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0"
_BIT = "https://storage.googleapis.com/bit_models/"
_KAGGLE_VIT = "spsayakpaul/vision-transformer/tensorFlow2/"
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"

# Stanford Dogs SHA-256s as published with TFDS' `stanford_dogs` builder; ResNet-50's MD5 is
# WEIGHTS_HASHES["resnet50"][0] of keras/src/applications/resnet.py; CIFAR-10's SHA-256 is the
# file_hash of keras/src/datasets/cifar10.py. The ViT .npz files have no published digest.
RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in [
        Resource(
            "dogs_images",
            _DOGS + "images.tar",
            "images.tar",
            "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
            793_579_520,
        ),
        Resource(
            "dogs_lists",
            _DOGS + "lists.tar",
            "lists.tar",
            "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
            481_280,
        ),
        Resource(
            "dogs_annotation",
            _DOGS + "annotation.tar",
            "annotation.tar",
            "662ed36f707be6b195c2fda392d8e153e83af28cedc8e2134a649f198def30fd",
            21_852_160,
        ),
        Resource(
            "vit_s16_i21k_ft_i1k",
            _VIT + _S16 + "--imagenet2012-steps_20k-lr_0.03-res_224.npz",
            "vit_s16_i21k_ft_i1k.npz",
            None,
            88_000_000,
        ),
        Resource("vit_s16_i21k", _VIT + _S16 + ".npz", "vit_s16_i21k.npz", None, 120_000_000),
        Resource(
            "vit_b16_i21k_ft_i1k",
            _VIT + "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0"
            "-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz",
            "vit_b16_i21k_ft_i1k.npz",
            None,
            350_000_000,
        ),
        # BiT-M R50x1 (big_transfer README); no published digest: verified by announced length.
        # Sizes approximate: float32 weights, 68.3 M parameters (21k head) / 25.5 M (1k head).
        Resource("bit_m_r50x1", _BIT + "BiT-M-R50x1.npz", "BiT-M-R50x1.npz", None, 274_000_000),
        Resource(
            "bit_m_r50x1_ilsvrc2012",
            _BIT + "BiT-M-R50x1-ILSVRC2012.npz",
            "BiT-M-R50x1-ILSVRC2012.npz",
            None,
            103_000_000,
        ),
        Resource(
            "hub_vit_s16_fe",
            "https://tfhub.dev/sayakpaul/vit_s16_fe/1",
            "vit_s16_fe",
            size=80_000_000,
            extract=True,
            archive="vit_s16_fe.tar.gz",
            query="tf-hub-format=compressed",
            expect="saved_model.pb",
            kaggle=_KAGGLE_VIT + "vit-s16-fe",
            optional=True,
        ),
        Resource(
            "hub_vit_s16_classification",
            "https://tfhub.dev/sayakpaul/vit_s16_classification/1",
            "vit_s16_classification",
            size=85_000_000,
            extract=True,
            archive="vit_s16_classification.tar.gz",
            query="tf-hub-format=compressed",
            expect="saved_model.pb",
            kaggle=_KAGGLE_VIT + "vit-s16-classification",  # by analogy
            optional=True,
        ),
        Resource(
            "resnet50_imagenet",
            _KERAS_APPS + "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            None,
            102_967_424,
            md5="2cb95161c43110f7111970584f804107",
        ),
        # BVLC/caffe's ILSVRC-2012 auxiliary files (data/ilsvrc12/get_ilsvrc_aux.sh); train.txt
        # lists the 1,281,167 training images. No published digest: imagenet_overlap checks
        # its content.
        Resource(
            "ilsvrc12_aux",
            "http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz",
            "caffe_ilsvrc12.tar.gz",
            None,
            17_900_000,
        ),
        Resource(
            "cifar10",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-batches-py",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170_498_071,
            extract=True,
            archive="cifar-10-python.tar.gz",
            expect="data_batch_1",
        ),
    ]
}

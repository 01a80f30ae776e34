"""Every file vitwatch fetches from the network, in one table, with one downloader.

:func:`fetch` serves each entry of :data:`RESOURCES` (Stanford Dogs tars, ViT ``.npz``
checkpoints, the ResNet-50 ``.h5``, the TF Hub archive, CIFAR-10) from
``$VITWATCH_CACHE/downloads`` (``cfg.cache_dir``), downloading it first when needed. One module
per step, in the order a download takes them:

- :mod:`.resources`: the table (URL, file name, published digest, size): the file to open to
  add a download;
- :mod:`.web`: the HTTP layer (connect and read timeouts, redirects, the test mirror,
  failures classified);
- :mod:`.checks`: digests (published, or the test mirror's) and format checks;
- :mod:`.transfer`: one download (retries with backoff, resume, verification, cache record);
- :mod:`.archives`: safe, atomic tar extraction;
- :mod:`.cache`: :func:`fetch` of a named resource (handed in, cached, or downloaded);
- :mod:`.reachability`: :func:`preflight`, every needed download cached or reachable;
- :mod:`.errors`: :class:`DownloadError`, one per failure, naming the URL, the cause and the
  alternatives.

For tests and the rehearsal only: ``VITWATCH_MIRROR`` (:mod:`.web`) and
``VITWATCH_MIRROR_CHECKSUMS`` (:mod:`.checks`) serve every URL from a local mirror. Real users
never set either.
"""

from .archives import extract, extract_tar
from .cache import cache_subdir, fetch, is_cached
from .checks import check_format
from .errors import OFFLINE_HINT, DownloadError
from .reachability import preflight
from .resources import RESOURCES, Resource
from .transfer import RETRIES, download
from .web import CONNECT_TIMEOUT, READ_TIMEOUT

__all__ = [
    "CONNECT_TIMEOUT",
    "OFFLINE_HINT",
    "READ_TIMEOUT",
    "RESOURCES",
    "RETRIES",
    "DownloadError",
    "Resource",
    "cache_subdir",
    "check_format",
    "download",
    "extract",
    "extract_tar",
    "fetch",
    "is_cached",
    "preflight",
]

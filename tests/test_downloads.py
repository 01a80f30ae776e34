"""Fault rehearsal of the one downloader against a loopback HTTP server.

The server (127.0.0.1, port 0, daemon thread) serves small files in the real formats under the
real URL paths, reached through the test-only ``VITWATCH_MIRROR`` rewrite, and misbehaves on
request: 403, 404, 500, a stall, a truncated body, a server that ignores ``Range``, a redirect
chain tfhub.dev -> Kaggle -> storage.googleapis.com. Every wait is bounded (short timeouts,
few retries, backoff sleeps recorded instead of slept)."""

import hashlib
import http.server
import io
import json
import pickle
import re
import tarfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from vitwatch import downloads
from vitwatch.downloads import checks, reachability, transfer

FAST = (2.0, 0.5)  # connect, read timeouts of the fault tests (seconds)


def _path(url: str) -> str:
    """``https://host/path?query`` -> ``/host/path?query``: where the mirror serves it."""
    return "/" + url.split("://", 1)[1]


class Mirror:
    """Files by mirror path, per-path queues of faults, and a log of (path, Range) requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []
        self.release = threading.Event()  # ends the stalls at teardown
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.log.append((self.path, self.headers.get("Range")))
                queue = mirror.faults.get(self.path, [])
                fault = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else ""
                if fault.isdigit():
                    self.send_error(int(fault))
                elif fault == "slow":  # the file, half a second late
                    time.sleep(0.5)
                    self._send(mirror.files[self.path], "")
                elif fault == "stall":
                    mirror.release.wait(10)  # says nothing; the client must time out
                elif fault.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("Location", fault.split(":", 1)[1])
                    self.end_headers()
                elif self.path not in mirror.files:
                    self.send_error(404)
                else:
                    self._send(mirror.files[self.path], fault)

            def _send(self, body: bytes, fault: str):
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                if_range = self.headers.get("If-Range")
                if match and fault != "ignore-range" and if_range in (None, etag):
                    start = int(match.group(1))
                    end = int(match.group(2)) + 1 if match.group(2) else len(body)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
                    body = body[start:end]
                else:
                    self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault in ("truncate", "ignore-range-truncate"):
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def serve(self, url: str, body: bytes, *faults: str) -> str:
        path = _path(url)
        self.files[path] = body
        if faults:
            self.faults[path] = list(faults)
        return path

    def requests(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(monkeypatch):
    m = Mirror()
    monkeypatch.setenv("VITWATCH_MIRROR", m.url)
    monkeypatch.delenv("VITWATCH_MIRROR_CHECKSUMS", raising=False)
    yield m
    m.close()


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff waits, recorded instead of slept."""
    waited = []
    monkeypatch.setattr(transfer.time, "sleep", waited.append)
    return waited


def _npz_bytes(seed=0) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{"cls": np.random.default_rng(seed).standard_normal((1, 1, 8))})
    return buf.getvalue()


def _publish(monkeypatch, name: str, body: bytes, algo="sha256"):
    """Pretend ``body`` is the published file of ``name`` (its digest in RESOURCES)."""
    import dataclasses

    res = downloads.RESOURCES[name]
    digest = hashlib.new(algo, body).hexdigest()
    fields = (
        {"sha256": digest, "md5": None} if algo == "sha256" else {"sha256": None, "md5": digest}
    )
    monkeypatch.setitem(downloads.RESOURCES, name, dataclasses.replace(res, **fields))


# --- HTTP faults ---------------------------------------------------------------------------


def test_403_fails_at_once_naming_url_and_alternatives(mirror, sleeps, tmp_path):
    url = downloads.RESOURCES["vit_s16_i21k"].url
    path = mirror.serve(url, _npz_bytes(), "403")
    with pytest.raises(downloads.DownloadError) as err:
        downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert len(mirror.requests(path)) == 1 and sleeps == []  # one try, no backoff
    msg = str(err.value)
    assert "refused (HTTP 403)" in msg and url in msg and err.value.cause == "refused"
    assert str(tmp_path / "downloads" / "vit_s16_i21k.npz") in msg and "PROFILE=smoke" in msg
    assert not list((tmp_path / "downloads").iterdir())


def test_404_is_not_found_and_not_retried(mirror, sleeps, tmp_path):
    path = _path(downloads.RESOURCES["vit_s16_i21k"].url)  # nothing served there
    with pytest.raises(downloads.DownloadError, match=r"not found \(HTTP 404\)"):
        downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert len(mirror.requests(path)) == 1


def test_500_then_200_succeeds_after_a_backoff(mirror, sleeps, tmp_path, monkeypatch):
    body = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40
    _publish(monkeypatch, "resnet50_imagenet", body, algo="md5")
    path = mirror.serve(downloads.RESOURCES["resnet50_imagenet"].url, body, "500", "")
    got = downloads.fetch("resnet50_imagenet", tmp_path)  # with the progress bar
    assert got.read_bytes() == body and got.name == "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    assert len(mirror.requests(path)) == 2 and sleeps == [transfer.BACKOFF]


def test_a_stalled_server_errors_within_the_timeout(mirror, sleeps, tmp_path):
    path = mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, _npz_bytes(), "stall")
    t0 = time.monotonic()
    with pytest.raises(downloads.DownloadError, match="timeout") as err:
        downloads.fetch("vit_s16_i21k", tmp_path, retries=2, timeout=FAST, progress=False)
    assert time.monotonic() - t0 < 2 * FAST[1] + 3
    assert err.value.cause == "timeout" and len(mirror.requests(path)) == 2
    assert len(sleeps) == 1  # retried once, with backoff


def test_a_truncated_body_is_never_taken_for_the_file(mirror, sleeps, tmp_path):
    body = _npz_bytes()
    mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, body, "ignore-range-truncate")
    with pytest.raises(downloads.DownloadError, match="truncated") as err:
        downloads.fetch("vit_s16_i21k", tmp_path, retries=2, progress=False)
    assert err.value.cause == "truncated"
    cached = tmp_path / "downloads" / "vit_s16_i21k.npz"
    assert not cached.exists() and not downloads.is_cached("vit_s16_i21k", tmp_path)
    part = cached.with_name(cached.name + ".part")
    assert not part.exists() or part.stat().st_size < len(body)


def test_an_interrupted_download_is_resumed_by_the_rerun(mirror, sleeps, tmp_path):
    body = _npz_bytes(1)
    url = downloads.RESOURCES["vit_s16_i21k"].url
    path = mirror.serve(url, body, "truncate", "")
    with pytest.raises(downloads.DownloadError, match="truncated"):
        downloads.fetch("vit_s16_i21k", tmp_path, retries=1, progress=False)
    part = tmp_path / "downloads" / "vit_s16_i21k.npz.part"
    half = len(body) // 2
    assert part.stat().st_size == half
    got = downloads.fetch("vit_s16_i21k", tmp_path, progress=False)  # the rerun
    assert mirror.requests(path) == [None, f"bytes={half}-"]  # only the rest asked
    assert got.read_bytes() == body and not part.exists()
    meta = json.loads((got.parent / (got.name + ".meta.json")).read_text())
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["url"] == url


def test_a_file_changed_between_tries_is_downloaded_whole_not_spliced(mirror, sleeps, tmp_path):
    old, new = _npz_bytes(4), _npz_bytes(5)
    assert len(old) == len(new) and old != new
    path = mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, old, "truncate")
    with pytest.raises(downloads.DownloadError, match="truncated"):
        downloads.fetch("vit_s16_i21k", tmp_path, retries=1, progress=False)
    mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, new, "")  # a new version
    got = downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert mirror.requests(path)[1] == f"bytes={len(old) // 2}-"  # asked to resume...
    assert got.read_bytes() == new  # ...got the whole new one
    assert not list(got.parent.glob("*.part*"))


def test_a_server_ignoring_range_restarts_the_download(mirror, sleeps, tmp_path):
    body = _npz_bytes(2)
    path = mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, body, "ignore-range")
    part = tmp_path / "downloads" / "vit_s16_i21k.npz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes")
    got = downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert mirror.requests(path) == ["bytes=11-"] and got.read_bytes() == body


def test_checksum_mismatch_is_rejected(mirror, sleeps, tmp_path, monkeypatch):
    _publish(monkeypatch, "dogs_lists", b"the published bytes")
    mirror.serve(downloads.RESOURCES["dogs_lists"].url, b"other bytes")
    with pytest.raises(downloads.DownloadError, match="checksum mismatch") as err:
        downloads.fetch("dogs_lists", tmp_path, progress=False)
    assert err.value.cause == "checksum mismatch"
    assert not list((tmp_path / "downloads").glob("lists.tar*"))  # neither file nor .part


def test_a_web_page_served_with_200_is_not_an_npz(mirror, sleeps, tmp_path):
    mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, b"<!DOCTYPE html><html>Sign in")
    with pytest.raises(downloads.DownloadError, match="web page") as err:
        downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert err.value.cause == "bad file"
    assert not (tmp_path / "downloads" / "vit_s16_i21k.npz").exists()


def test_a_corrupt_cached_file_is_downloaded_again(mirror, sleeps, tmp_path):
    body = _npz_bytes(3)
    path = mirror.serve(downloads.RESOURCES["vit_s16_i21k"].url, body)
    got = downloads.fetch("vit_s16_i21k", tmp_path, progress=False)
    assert downloads.fetch("vit_s16_i21k", tmp_path, progress=False) == got  # cached
    assert len(mirror.requests(path)) == 1
    got.write_bytes(body[:-8] + b"garbage!")  # same size, other bytes
    assert downloads.fetch("vit_s16_i21k", tmp_path, progress=False).read_bytes() == body
    assert len(mirror.requests(path)) == 2


def test_mirror_checksums_are_for_the_mirror_only(mirror, sleeps, tmp_path, monkeypatch):
    """The rehearsal's stand-ins are verified against its manifest, only under the mirror."""
    body = b"stand-in lists.tar"
    table = tmp_path / "checksums.json"
    table.write_text(json.dumps({"dogs_lists": {"sha256": hashlib.sha256(body).hexdigest()}}))
    monkeypatch.setenv("VITWATCH_MIRROR_CHECKSUMS", str(table))
    res = downloads.RESOURCES["dogs_lists"]
    assert checks.expected_digest(res) == ("sha256", hashlib.sha256(body).hexdigest())
    mirror.serve(res.url, body)
    with pytest.raises(downloads.DownloadError, match="not a tar archive"):
        downloads.fetch("dogs_lists", tmp_path, progress=False)  # digest ok, format not
    monkeypatch.delenv("VITWATCH_MIRROR")
    assert checks.expected_digest(res) == ("sha256", res.sha256)  # the published one


# --- archives ----------------------------------------------------------------------------


def _tar_gz(files: dict[str, bytes], evil: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in {**files, **({evil: b"x"} if evil else {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Python 3.14 will:DeprecationWarning")  # no filter= there
@pytest.mark.parametrize("data_filter", [True, False])
def test_extraction_is_safe_with_or_without_data_filter(tmp_path, monkeypatch, data_filter):
    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)  # Python < 3.10.12
    good = tmp_path / "good.tar.gz"
    good.write_bytes(_tar_gz({"top/a.txt": b"a", "top/sub/b.txt": b"b"}))
    out = downloads.extract(good, tmp_path / "out", expect="a.txt")  # top/ unwrapped
    assert (out / "sub" / "b.txt").read_bytes() == b"b"
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(_tar_gz({"a.txt": b"a"}, evil="../escaped.txt"))
    with pytest.raises(ValueError, match="not a readable tar archive"):
        downloads.extract(evil, tmp_path / "out2")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out2").exists()
    assert not list(tmp_path.glob("*.partial-*"))


def _cifar_tar_gz(n=4) -> tuple[bytes, np.ndarray]:
    """CIFAR-10's python archive in miniature: pickled batches of (n, 3072) uint8 rows."""
    rng = np.random.default_rng(0)
    files, first = {}, None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        first = data if first is None else first
        batch = {b"data": data, b"labels": list(rng.integers(0, 10, n).tolist())}
        files[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": []})
    return _tar_gz(files), first


def test_cifar10_comes_through_the_downloader_into_the_cache(mirror, sleeps, tmp_path, monkeypatch):
    from vitwatch.data import small

    body, first = _cifar_tar_gz()
    _publish(monkeypatch, "cifar10", body)
    mirror.serve(downloads.RESOURCES["cifar10"].url, body)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # must stay unused
    data = small.load(types.SimpleNamespace(small_dataset="cifar10", cache_dir=str(tmp_path)))
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    # rows are R, G, B planes of 32x32: pixel (0, 1) of image 0 is bytes 1, 1025, 2049
    np.testing.assert_array_equal(data.x_train[0, 0, 1], first[0, [1, 1025, 2049]])
    assert (tmp_path / "downloads" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not (tmp_path / "keras").exists()


def test_two_runs_fetching_one_archive_at_once_download_it_once(mirror, tmp_path, monkeypatch):
    """Two notebooks at once (threads here: flock locks open files, not processes) needing
    the same archive: one downloads and extracts it, the other waits and finds it made."""
    body, _ = _cifar_tar_gz()
    _publish(monkeypatch, "cifar10", body)
    path = mirror.serve(downloads.RESOURCES["cifar10"].url, body, "slow")
    got, errors = [], []

    def fetch():
        try:
            got.append(downloads.fetch("cifar10", tmp_path, progress=False))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(got) == 2 and got[0] == got[1]
    assert len(mirror.requests(path)) == 1  # downloaded once
    assert (got[0] / "test_batch").is_file()
    assert not list((tmp_path / "downloads").glob("*.partial-*"))


def test_a_lock_held_too_long_is_an_error_naming_the_lock_file(tmp_path):
    from vitwatch import fileio

    lock = tmp_path / ".thing.lock"
    held, release = threading.Event(), threading.Event()

    def hold():
        with fileio.exclusive(lock):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    said = []
    try:
        with pytest.raises(TimeoutError, match=r"\.thing\.lock: still locked"):
            with fileio.exclusive(lock, timeout=0.3, poll=0.05, log=said.append):
                pass
    finally:
        release.set()
        holder.join(10)
    assert len(said) == 1 and "waiting" in said[0]
    with fileio.exclusive(lock, timeout=1):  # free again once the holder left
        pass


# --- preflight ---------------------------------------------------------------------------


def test_preflight_tells_refused_from_offline_and_timeout(mirror, tmp_path):
    R = downloads.RESOURCES
    mirror.serve(R["dogs_lists"].url, b"x")
    mirror.serve(R["dogs_annotation"].url, b"x", "403")
    mirror.serve(R["vit_s16_i21k"].url, b"x", "stall")
    hub_path = mirror.serve(R["hub_vit_s16_fe"].download_url, b"x")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "images.tar").write_bytes(b"x")
    with pytest.raises(downloads.DownloadError) as err:
        downloads.preflight(
            ["dogs_images", "dogs_lists", "dogs_annotation", "vit_s16_i21k", "vit_s16_i21k_ft_i1k"],
            tmp_path,
            timeout=0.5,
        )
    msg = str(err.value)
    assert "dogs_annotation" in msg and "refused (HTTP 403)" in msg
    assert "vit_s16_i21k:" in msg and "timeout" in msg
    assert "not found (HTTP 404)" in msg and "dogs_lists" not in msg and "dogs_images" not in msg
    names = ["dogs_images", "dogs_lists", "hub_vit_s16_fe"]
    status = downloads.preflight(names, tmp_path, timeout=0.5)
    assert status == {
        "dogs_images": "cached",
        "dogs_lists": "reachable",
        "hub_vit_s16_fe": "reachable",
    }
    assert mirror.requests(hub_path) == ["bytes=0-0"]  # the archive itself is checked
    mirror.faults[hub_path] = ["403"]  # optional: reported, not fatal
    assert downloads.preflight(["hub_vit_s16_fe"], tmp_path, timeout=0.5) == {
        "hub_vit_s16_fe": "refused (HTTP 403)"
    }
    mirror.close()
    assert reachability.probe(R["dogs_lists"].url, 0.5).startswith("offline")


# --- the TF Hub route --------------------------------------------------------------------


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory):
    """A tiny SavedModel with the hub interface, and its tf-hub-format=compressed archive."""
    import keras

    from vitwatch.models import hub, vit

    keras.utils.set_random_seed(0)
    model = vit.build("testing", num_classes=0, img_size=32)
    folder = hub.export_savedmodel(model, tmp_path_factory.mktemp("sm") / "vit_fe")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(folder)), recursive=False)
    return model, folder, buf.getvalue()


def test_tfhub_redirect_chain_to_storage_loads_the_backbone(mirror, sleeps, tmp_path, savedmodel):
    from vitwatch.models import hub

    model, _, archive = savedmodel
    res = downloads.RESOURCES["hub_vit_s16_fe"]
    kaggle = (
        "https://www.kaggle.com/api/v1/models/spsayakpaul/vision-transformer/tensorFlow2/"
        "vit-s16-fe/1/download"
    )
    storage = "https://storage.googleapis.com/kaggle-models-data/1234/vit-s16-fe.tar.gz"
    first = mirror.serve(res.download_url, b"", "redirect:" + kaggle)
    mirror.serve(kaggle, b"", "redirect:" + storage)
    last = mirror.serve(storage, archive)
    backbone = hub.load_hub_backbone(res.url, cache_dir=tmp_path)
    assert [p for p, _ in mirror.log] == [first, _path(kaggle), last]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(backbone.predict_on_batch(x)), np.asarray(model(x)), atol=1e-5
    )
    assert downloads.is_cached("hub_vit_s16_fe", tmp_path)
    assert (tmp_path / "downloads" / res.fname / "saved_model.pb").is_file()
    assert hub.resolve(res.url, cache_dir=tmp_path) == tmp_path / "downloads" / res.fname
    assert len(mirror.log) == 3  # offline from now on


def test_kagglehub_is_the_fallback_when_tfhub_refuses(
    mirror, sleeps, tmp_path, savedmodel, monkeypatch
):
    import kagglehub

    from vitwatch.models import hub

    _, folder, _ = savedmodel
    res = downloads.RESOURCES["hub_vit_s16_fe"]
    path = mirror.serve(res.download_url, b"", "403")
    asked = []
    monkeypatch.setattr(
        kagglehub, "model_download", lambda h, *a, **k: asked.append(h) or str(folder.parent)
    )  # SavedModel one level down
    assert hub.resolve(res.url, cache_dir=tmp_path) == folder
    assert asked == ["spsayakpaul/vision-transformer/tensorFlow2/vit-s16-fe"]
    assert len(mirror.requests(path)) == 1 and sleeps == []


def test_every_route_failing_skips_the_hub_comparison_with_one_sentence(
    mirror, sleeps, tmp_path, monkeypatch
):
    import kagglehub

    from vitwatch import config
    from vitwatch.models import hub, registry

    res = downloads.RESOURCES["hub_vit_s16_fe"]
    mirror.serve(res.download_url, b"", "403")

    def refused(handle, *a, **k):
        raise PermissionError("403 Client Error: Forbidden for url")

    monkeypatch.setattr(kagglehub, "model_download", refused)
    with pytest.raises(downloads.DownloadError) as err:
        hub.resolve(res.url, cache_dir=tmp_path)
    msg = str(err.value)
    assert "refused (HTTP 403)" in msg and "Kaggle Models" in msg and "PermissionError" in msg
    assert "hub_handle=" in msg and str(tmp_path / "downloads" / "vit_s16_fe") in msg
    cfg = config.from_profile("smoke", cache_dir=str(tmp_path), hub_handle="hub_vit_s16_fe")
    built, skipped = registry.backbones(["vit_s16_hub"], cfg)
    assert built == {} and list(skipped) == ["vit_s16_hub"]
    sentence = skipped["vit_s16_hub"]
    assert sentence.count(". ") == 0 and sentence.endswith(".") and "403" in sentence
    assert "skipped" in sentence and "Kaggle" in sentence


def test_published_keras_hashes_are_the_installed_keras_ones():
    """ResNet-50's MD5 and CIFAR-10's SHA-256 are Keras' own (read from its source)."""
    import importlib.util

    root = Path(importlib.util.find_spec("keras").origin).parent / "src"
    resnet = (root / "applications" / "resnet.py").read_text()
    cifar = (root / "datasets" / "cifar10.py").read_text()
    assert re.search(r'"resnet50": \(\s*"' + downloads.RESOURCES["resnet50_imagenet"].md5, resnet)
    assert downloads.RESOURCES["cifar10"].sha256 in cifar
    assert downloads.RESOURCES["resnet50_imagenet"].url.endswith(
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    )

"""Robust decoding: every awkward file a scraped dataset holds, generated here, never fatal."""

import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from vitwatch.data import images


def _rgb(h=40, w=60):
    """A test picture: red left half, blue right half, a green marker in the top-left."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 30, 30)
    a[:, w // 2 :] = (30, 30, 220)
    a[:8, :8] = (30, 220, 30)
    return a


def _png_header_only(path, width, height):
    """A tiny PNG that claims ``width x height`` pixels (a decompression bomb's header)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_plain_jpeg_and_resize(tmp_path):
    p = tmp_path / "ok.jpg"
    Image.fromarray(_rgb()).save(p, quality=95)
    a = images.load_image(p)
    assert a.dtype == np.uint8 and a.shape == (40, 60, 3)
    assert a[20, 5, 0] > 180 and a[20, 55, 2] > 180  # red left, blue right
    b = images.load_image(p, img_size=32)
    assert b.shape == (32, 32, 3)


def test_grayscale_cmyk_png_as_jpg_palette_alpha_16bit(tmp_path):
    log = images.BadImageLog()
    rgb = _rgb()
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(rgb).save(tmp_path / "png.jpg", format="PNG")  # PNG named .jpg
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.info["transparency"] = pal.getpixel((0, 0))  # marker transparent
    pal.save(tmp_path / "palette.png", transparency=pal.getpixel((0, 0)))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:8, :8, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    deep = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep16.png")

    gray = images.load_image(tmp_path / "gray.jpg", log=log)
    assert gray.shape == (40, 60, 3) and np.array_equal(gray[..., 0], gray[..., 1])
    cmyk = images.load_image(tmp_path / "cmyk.jpg", log=log)
    assert cmyk.shape == (40, 60, 3)
    assert cmyk[20, 5, 0] > 150 and cmyk[20, 5, 2] < 100  # still red on the left
    png = images.load_image(tmp_path / "png.jpg", log=log)
    assert np.array_equal(png, rgb)  # lossless: exact
    palette = images.load_image(tmp_path / "palette.png", log=log)
    assert palette.shape == (40, 60, 3) and tuple(palette[2, 2]) == (255, 255, 255)
    alpha = images.load_image(tmp_path / "alpha.png", log=log)
    assert tuple(alpha[2, 2]) == (255, 255, 255) and alpha[20, 5, 0] > 180
    d16 = images.load_image(tmp_path / "deep16.png", log=log)
    assert d16.shape == (40, 60, 3) and d16.min() == 0 and d16.max() == 255
    assert log.count == 0


def test_exif_rotation_is_applied(tmp_path):
    rgb = _rgb()  # (40, 60): landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW"
    p = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90).save(p, quality=95, exif=exif)
    with Image.open(p) as raw:
        assert raw.size == (40, 60)  # stored sideways
    a = images.load_image(p)
    assert a.shape == (40, 60, 3)  # displayed upright
    assert a[3, 3, 1] > 180 and a[3, 3, 0] < 100  # marker back top-left


def _bright_rectangle_photo(path, orientation):
    """A 64 x 40 (W x H) photo stored in EXIF ``orientation``: dark, with a bright 24 x 8
    rectangle at stored columns 16..39, rows 8..15 (0-based; off-centre both ways, so no
    flip maps it onto itself; 8-px aligned, so JPEG keeps its edges). Returns its PASCAL VOC
    box on the stored pixels (1-based inclusive)."""
    stored = np.full((40, 64, 3), 20, np.uint8)
    stored[8:16, 16:40] = 235
    exif = Image.Exif()
    exif[images.ORIENTATION_TAG] = orientation
    Image.fromarray(stored).save(path, quality=95, subsampling=0, exif=exif)
    return [17, 9, 40, 16]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_the_exif_transpose_of_the_pixels(tmp_path, orientation):
    """The box drawn on the stored pixels, carried by orient_boxes, covers exactly the bright
    pixels of the image load_image returns, for each of the 8 EXIF orientations."""
    path = tmp_path / f"o{orientation}.jpg"
    box = _bright_rectangle_photo(path, orientation)
    assert images.header(path) == (orientation, (64, 40))
    a = images.load_image(path)
    assert a.shape[:2] == ((64, 40) if orientation >= 5 else (40, 64))  # (H, W) upright
    with Image.open(path) as raw:  # Pillow's own reading of the tag
        from PIL import ImageOps

        np.testing.assert_array_equal(a, np.asarray(ImageOps.exif_transpose(raw)))
    bright = a.mean(axis=2) > 128  # (H, W)
    x0, y0, x1, y1 = images.orient_boxes([box], orientation, (64, 40))[0]
    expected = np.zeros_like(bright)
    expected[int(y0) - 1 : int(y1), int(x0) - 1 : int(x1)] = True  # VOC: 1-based incl.
    np.testing.assert_array_equal(bright, expected)
    assert images.oriented_size(orientation, (64, 40)) == (a.shape[1], a.shape[0])
    if orientation != 1:  # the old bug: boxes left in the stored frame
        stale = np.zeros_like(bright)
        stale[box[1] - 1 : box[3], box[0] - 1 : box[2]] = True
        assert stale.shape != bright.shape or not np.array_equal(stale, bright)


def test_orient_boxes_maps_every_pixel_as_pillow_does():
    """Each stored pixel, as a 1-pixel box, lands where Pillow's transpose moves it."""
    W, H = 7, 5
    for orientation, transpose in images.EXIF_TRANSPOSE.items():
        for x, y in [(1, 1), (7, 1), (1, 5), (3, 2), (7, 5)]:
            marker = np.zeros((H, W), np.uint8)
            marker[y - 1, x - 1] = 255
            moved = np.asarray(Image.fromarray(marker).transpose(transpose))
            (row,), (col,) = np.nonzero(moved)
            box = images.orient_boxes([[x, y, x, y]], orientation, (W, H))[0]
            assert box.tolist() == [col + 1, row + 1, col + 1, row + 1], (orientation, x, y)
    np.testing.assert_array_equal(images.orient_boxes([[1, 2, 3, 4]], 1, (W, H)), [[1, 2, 3, 4]])
    assert images.orient_boxes(np.zeros((0, 4)), 6, (W, H)).shape == (0, 4)


def test_unusual_orientation_tags_are_ignored(tmp_path):
    for value in (0, 9, 300):
        path = tmp_path / f"tag{value}.jpg"
        exif = Image.Exif()
        exif[images.ORIENTATION_TAG] = value
        Image.fromarray(_rgb()).save(path, quality=95, exif=exif)
        assert images.header(path)[0] == 1
        assert images.load_image(path).shape == (40, 60, 3)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        images.header(tmp_path / "nope.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.jpg"):
        images.header(tmp_path / "junk.jpg")


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("garbage", "not a recognised image"),
        ("missing", "missing file"),
        ("bomb", "decompression-bomb"),
        ("textfile", "not a recognised"),
    ],
)
def test_undecodable_files_are_skipped_and_logged(tmp_path, kind, reason):
    p = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
            tmp_path / "full.jpg", quality=95
        )
        data = (tmp_path / "full.jpg").read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        p.write_bytes(np.random.default_rng(1).bytes(2000))
    elif kind == "bomb":
        _png_header_only(p, 100_000, 100_000)
    elif kind == "textfile":
        p.write_text("<html>403 Forbidden</html>")
    log = images.BadImageLog()
    assert images.load_image(p, img_size=32, log=log) is None
    assert log.count == 1 and log.files == [str(p)]
    assert reason in log.reasons[0], log.reasons
    assert images.check_image(p) is not None
    # Same file twice: recorded once.
    images.load_image(p, log=log)
    assert log.count == 1 and "1 image(s) skipped" in log.summary()


def test_default_log_and_to_list(tmp_path):
    p = tmp_path / "zero.jpg"
    p.write_bytes(b"")
    assert images.load_image(p) is None
    assert str(p) in images.BAD_IMAGES
    entry = images.BadImageLog({str(p): "empty file (0 bytes)"}).to_list()
    assert entry == [{"file": str(p), "reason": "empty file (0 bytes)"}]


def test_large_jpeg_decodes_quickly_at_reduced_scale(tmp_path):
    rng = np.random.default_rng(0)
    big = np.kron(rng.integers(0, 255, (30, 40, 3), np.uint8), np.ones((100, 100, 1), np.uint8))
    p = tmp_path / "big.jpg"  # 3000 x 4000 px
    Image.fromarray(big).save(p, quality=85)
    t = time.perf_counter()
    a = images.load_image(p, img_size=64)
    assert a.shape == (64, 64, 3)
    assert time.perf_counter() - t < 2.0
    full = images.load_image(p, min_side=500)  # draft: >= 500 px
    assert full.shape[0] >= 500 and full.shape[0] < 3000


def test_bomb_guard_threshold_is_configurable(tmp_path, monkeypatch):
    p = tmp_path / "ok.png"
    Image.fromarray(_rgb()).save(p)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    log = images.BadImageLog()
    assert images.load_image(p, log=log) is None and "decompression-bomb" in log.reasons[0]

"""Boxes, mass inside boxes, centre prior, pointing game, and the chapter's summaries of them."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vitwatch.analysis import boxes as bx  # noqa: E402
from vitwatch.analysis import localisation as loc  # noqa: E402


def test_scale_boxes_and_mask():
    boxes = [[0, 0, 100, 50]]  # left half, top half of a 200 x 100 photo
    scaled = bx.scale_boxes(boxes, (200, 100), 10)
    np.testing.assert_allclose(scaled, [[0, 0, 5, 5]])
    mask = bx.box_mask(scaled, 10, 10)
    assert mask.sum() == 25 and mask[:5, :5].all()
    assert bx.box_fraction(boxes, (200, 100)) == pytest.approx(0.25)
    # union of two overlapping boxes counted once
    two = [[0, 0, 100, 100], [50, 0, 150, 100]]
    assert bx.box_fraction(two, (200, 100)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive"):
        bx.scale_boxes(boxes, (0, 100), 10)


def test_mass_inside_and_pointing():
    mask = bx.box_mask([[4, 4, 12, 12]], 16, 16)
    inside = np.zeros((4, 4))
    inside[1:3, 1:3] = 1.0  # coarse map, 4 x 4 cells of 4 pixels
    assert loc.mass_inside(inside, mask) > 0.9
    assert loc.pointing_hit(inside, [[4, 4, 12, 12]], (16, 16))
    uniform = np.ones((8, 8))
    assert loc.mass_inside(uniform, mask) == pytest.approx(mask.mean())
    corner = np.zeros((4, 4))
    corner[0, 0] = 1
    assert loc.mass_inside(corner, mask) < 0.2
    assert not loc.pointing_hit(corner, [[40, 40, 120, 120]], (160, 160))
    # negative values are ignored, an all-zero map is uniform
    assert loc.mass_inside(-inside, mask) == pytest.approx(mask.mean())


def test_pointing_game_scores_the_peak_cell_centre_with_15_px_tolerance():
    # 7 x 7 map on a 224 x 224 frame: cells of 32 px; peak cell (row 0, col 3) has its centre
    # at (x, y) = (112, 16). Its top-left pixel (96, 0) would be the old, biased point.
    m = np.zeros((7, 7))
    m[0, 3] = 1
    assert loc.peak_centre(m, (224, 224)) == (112.0, 16.0)
    box = [[100, 0, 110, 40]]  # 2 px left of the centre: a hit
    assert bx.box_distance((112.0, 16.0), box) == pytest.approx(2.0)
    assert loc.pointing_hit(m, box, (224, 224))
    far = [[0, 31, 60, 60]]  # 52 px left, 15 px below: distance 54.1
    assert bx.box_distance((112.0, 16.0), far) == pytest.approx(np.hypot(52, 15))
    assert not loc.pointing_hit(m, far, (224, 224))
    edge = [[127, 0, 200, 40]]  # exactly 15 px to the right: a hit
    assert loc.pointing_hit(m, edge, (224, 224))
    assert not loc.pointing_hit(m, edge, (224, 224), tolerance=14.9)
    # a non-square frame: cells are 640 / 7 wide and 480 / 7 high
    x, y = loc.peak_centre(m, (480, 640))
    assert x == pytest.approx(3.5 * 640 / 7) and y == pytest.approx(0.5 * 480 / 7)
    with pytest.raises(ValueError, match="tolerance"):
        loc.pointing_hit(m, box, (224, 224), tolerance=-1)


def test_to_grid_preserves_mass_shares_and_gives_one_grid():
    rng = np.random.default_rng(0)
    fine = rng.random((14, 14))
    coarse = loc.to_grid(fine, (7, 7))
    assert coarse.shape == (7, 7)
    # each coarse cell is the mean of its 2 x 2 block: mass shares of blocks preserved
    np.testing.assert_allclose(coarse * 4, fine.reshape(7, 2, 7, 2).sum(axis=(1, 3)))
    np.testing.assert_array_equal(loc.to_grid(coarse, (7, 7)), coarse)
    assert loc.to_grid(fine, (5, 5)).shape == (5, 5)
    mask = bx.box_mask([[0, 0, 48, 112]], 112, 112)  # 3 whole coarse columns
    assert loc.mass_inside(coarse, mask) == pytest.approx(loc.mass_inside(fine, mask))


def test_centre_prior():
    p = loc.centre_prior(20, 20, 0.2)
    assert p.sum() == pytest.approx(1) and np.allclose(p, p[::-1, ::-1])
    centre = bx.box_mask([[5, 5, 15, 15]], 20, 20)
    assert p[centre].sum() > 0.6
    with pytest.raises(ValueError, match="sigma"):
        loc.centre_prior(4, 4, 0)


def test_evaluate_table():
    maps = {"perfect": np.zeros((2, 8, 8))}
    maps["perfect"][:, :4, :4] = 1
    boxes = [np.array([[0, 0, 50, 50]]), np.array([[0, 0, 50, 50], [60, 60, 90, 90]])]
    df = loc.evaluate(maps, boxes, [(100, 100), (100, 100)], grid=16)
    assert set(df["map"]) == {"perfect", "centre prior", "uniform"}
    perfect = df[df["map"] == "perfect"]
    assert perfect["mass_inside"].min() > 0.95 and perfect["hit"].all()
    uni = df[df["map"] == "uniform"]
    np.testing.assert_allclose(uni["mass_inside"], uni["box_fraction"])
    with pytest.raises(ValueError, match="1 perfect maps for 2 images"):
        loc.evaluate({"perfect": maps["perfect"][:1]}, boxes, [(1, 1)] * 2)
    # on a common 4 x 4 grid an 8 x 8 and a 4 x 4 version of one map score the same
    both = {"fine": maps["perfect"], "coarse": maps["perfect"][:, ::2, ::2]}
    df = loc.evaluate(both, boxes, [(100, 100), (100, 100)], grid=16, common_grid=(4, 4))
    f, c = (df[df["map"] == k].reset_index() for k in ("fine", "coarse"))
    np.testing.assert_allclose(f["mass_inside"], c["mass_inside"])
    assert list(f["hit"]) == list(c["hit"])
    # the centre prior points at the frame centre (50, 50): 28 px from [0, 0, 30, 30],
    # 10 px from [40, 60, 60, 90] (within 15 px)
    far = loc.evaluate(
        {}, [np.array([[0, 0, 30, 30]]), np.array([[40, 60, 60, 90]])], [(100, 100)] * 2, grid=16
    )
    assert far[far["map"] == "centre prior"]["hit"].tolist() == [False, True]


def test_image_size_reads_header(tmp_path):
    from PIL import Image

    Image.new("RGB", (30, 20)).save(tmp_path / "a.jpg")
    assert bx.image_size(tmp_path / "a.jpg") == (30, 20)
    with pytest.raises(FileNotFoundError, match="b.jpg"):
        bx.image_size(tmp_path / "b.jpg")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_and_boxes_in_the_frame_of_the_loaded_pixels(tmp_path, orientation):
    """A box drawn on the stored pixels of an EXIF-oriented photo, carried by orient_boxes and
    scaled with image_size onto the model's square input, covers the bright object there."""
    from PIL import Image

    from vitwatch.data import images

    stored = np.full((40, 64, 3), 20, np.uint8)  # (H, W) = (40, 64) stored
    stored[8:16, 16:40] = 235  # the object, off-centre
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(stored).save(path, quality=95, subsampling=0, exif=exif)
    wh = bx.image_size(path)
    assert wh == ((40, 64) if orientation >= 5 else (64, 40))
    box = images.orient_boxes([[17, 9, 40, 16]], *images.header(path))  # VOC, stored frame
    x = images.load_image(path, img_size=32)  # (32, 32, 3), as the models
    mask = bx.box_mask(bx.scale_boxes(box, wh, 32), 32, 32)
    bright = x.mean(axis=2) > 128
    assert bright[mask].mean() > 0.9 and bright[~mask].mean() < 0.05

"""Robustness curves (issue 11, the paper's Figure 9): corruptions at graded severities on real photographs
and Fashion-MNIST; the trained families are the augmentation engine's own transform at a fixed strength."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from minwa.augment.config import AugmentConfig
from minwa.augment.engine import Augmenter
from minwa.augment.params import sample_params
from minwa.data import open_dataset
from minwa.errors import MinwaError
from minwa.evaluate import EvalConfig, evaluate
from minwa.evaluate.robustness import (CORRUPTIONS, VIGNETTE_RADIUS, Corrupted, apply_corruption, corrupt,
                                       plot_robustness, robustness_curves, scaled_uint8, to_uint8)
from model_fixtures import train_tiny_fashion

SCALE, CROP = 128, 112


@pytest.fixture(autouse=True)
def one_thread():
    """Per-image corruption is many small ops: on 2 busy cores one thread is 20x faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(photo_folder):
    val = open_dataset(str(photo_folder / "val"))
    return [val.image(i, min_side=SCALE) for i in (0, len(val) // 3, 2 * len(val) // 3)]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_every_family_changes_the_photo_more_at_each_severity(photos):
    for family, fam in CORRUPTIONS.items():
        change = [np.mean([_mad(corrupt(im, family, s, SCALE, CROP), corrupt(im, family, 0, SCALE, CROP))
                           for im in photos]) for s in range(len(fam.levels))]
        assert change[0] == 0.0
        assert all(b > a for a, b in zip(change, change[1:])), (family, change)


def test_severity_zero_is_the_evaluations_centre_crop(photos):
    """Every family at severity 0 (and at value 0) is the test-time path's centre crop (minwa.evaluate.preprocess:
    the evaluation square at S, then the centre C x C), to the grey level."""
    from minwa.evaluate import preprocess as P

    for im in photos:
        want = P.centre_crop(P.resize(im, SCALE)[None], CROP)[0].float()
        for family in CORRUPTIONS:
            got = torch.from_numpy(corrupt(im, family, 0, SCALE, CROP)).permute(2, 0, 1).float()
            assert float((got - want).abs().max()) <= 1.0, family


# the training draws of one family alone, on the centre crop (as augment-preview's rows draw them)
TRAINING = {
    "colour cast": AugmentConfig(random_crop=False, color_cast=True),
    "vignetting": AugmentConfig(random_crop=False, vignette=True, p_vignette=1.0),
    "lens distortion": AugmentConfig(random_crop=False, lens=True, p_lens=1.0),
    "rotation": AugmentConfig(random_crop=False, rotation=10, p_rotation=1.0),
}


def _matching_draw(family: str, p) -> tuple[int, float]:
    """The first sample whose training draw is a corruption of ``family`` (its pattern), and its magnitude."""
    if family == "colour cast":
        o = p.offset
        hit = (o[:, 0] != 0) & (o[:, 1] == 0) & (o[:, 2] == -o[:, 0])
        value = o[:, 0]
    elif family == "vignetting":
        hit, value = (p.vig_radius == VIGNETTE_RADIUS) & (p.vig_strength > 0), p.vig_strength
    elif family == "lens distortion":
        hit, value = p.radial > 0, p.radial
    else:
        hit, value = p.angle != 0, torch.round(p.angle * (180 / math.pi))
    i = int(torch.nonzero(hit)[0])
    return i, float(value[i])


@pytest.mark.parametrize("family", list(TRAINING))
def test_a_trained_family_is_the_training_transform_at_that_strength(photos, family):
    """A training draw that is exactly a corruption's pattern (e.g. a cast of R +d, B -d) gives the same
    pixels through training's own path (Augmenter with drawn parameters) as the corruption at d."""
    im = photos[1]
    scaled = scaled_uint8(im, SCALE)
    p = sample_params(TRAINING[family], torch.arange(20000), 0, 0, tuple(scaled.shape[-2:]), CROP)
    i, value = _matching_draw(family, p)
    trained = Augmenter(TRAINING[family], CROP, mean=0.0, std=1.0, backend="torch")(scaled, [i], 0, 0)[0] * 255
    assert np.array_equal(to_uint8(trained), apply_corruption(im, family, value, SCALE, CROP)), (family, i, value)
    assert _mad(apply_corruption(im, family, value, SCALE, CROP), corrupt(im, family, 0, SCALE, CROP)) > 0.5


def test_bad_corruptions_are_one_sentence(photo_folder):
    val = open_dataset(str(photo_folder / "val"))
    with pytest.raises(MinwaError, match="unknown corruption 'fog'"):
        Corrupted(val, "fog", 1, SCALE, CROP)
    with pytest.raises(MinwaError, match="severities 0..4, got 7"):
        Corrupted(val, "blur", 7, SCALE, CROP)
    with pytest.raises(MinwaError, match="smaller than the model's 112x112 crop"):
        Corrupted(val, "blur", 1, 100, CROP)
    with pytest.raises(MinwaError, match="augment.fill must be one of"):
        Corrupted(val, "rotation", 1, SCALE, CROP, fill="mirror")


# ---------------------------------------------------------------- curves: a tiny model on Fashion-MNIST

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, fashion_dir):
    """Two deepimage-tiny nets (two seeds) trained for one epoch of 2,000 real training images (~5 s each)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("robust")
    paths = {name: str(train_tiny_fashion(fashion_dir, folder / name.replace(" ", "-"), n=2000, seed=seed))
             for name, seed in (("seed 0", 0), ("seed 1", 1))}
    torch.set_num_threads(before)
    return paths


def test_curves_have_the_clean_accuracy_at_severity_zero_and_plot(checkpoints, fashion_dir, tmp_path):
    test = open_dataset(fashion_dir, "test")
    result = robustness_curves(checkpoints, test, families=["rotation", "blur"], severities=[0, 2, 4],
                               limit=300, batch_size=100, flip=True)
    assert result["severities"] == [0, 2, 4] and result["images"] == 300 and result["flip"]
    assert set(result["accuracy"]) == set(checkpoints)
    assert result["families"]["rotation"]["levels"] == [0, 10, 30]
    for name, path in checkpoints.items():
        acc = result["accuracy"][name]
        assert set(acc) == {"rotation", "blur"} and all(len(v) == 3 for v in acc.values())
        clean = evaluate(EvalConfig(ckpts=[path], data=str(fashion_dir), limit=300, flip=True)).top1_accuracy
        assert acc["rotation"][0] == acc["blur"][0] == clean  # exactly the clean evaluation
        assert clean > 0.5  # well above chance (0.1): the curves measure a model that learned
        assert acc["rotation"][2] < clean  # 30 degrees, three times training's largest, costs accuracy
    png = plot_robustness(result, tmp_path / "robustness.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: nothing left beside it


def test_a_corrupted_view_scores_through_evaluate_unchanged(checkpoints, fashion_dir):
    """The view is a data set of crop-sized images: evaluate at the crop scores it, labels and classes kept."""
    test = open_dataset(fashion_dir, "test")
    view = Corrupted(test, "lens distortion", 4, 28, 28, fill="zeros")  # black past the edge, as fashion trains
    # the pullover's corners sample past the image: black with zeros, its mirrored sleeves with reflect
    assert view.image(1)[0, 0, 0] == 0 < Corrupted(test, "lens distortion", 4, 28, 28).image(1)[0, 0, 0]
    assert view.image(0).shape == (28, 28, 1) and view.classes == test.classes and len(view) == len(test)
    report = evaluate(EvalConfig(ckpts=[checkpoints["seed 1"]], scales=[28], limit=100), dataset=view)
    assert report.images == 100 and 0.0 <= report.top1_accuracy <= 1.0

"""Exact under faults (issue 14): damaged checkpoints, damaged or huge images and impossible options are
each one sentence and exit 2 through the real CLI, never a traceback or a silent wrong answer."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from data_fixtures import jpeg_bytes, photo, photo_folder
from minwa.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of ``minwa ARGV``; an error (exit 2) must be exactly one line, no traceback."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    if code == 2:  # train's start-up summary or a note may come first; the error is one last line
        lines = err.splitlines()
        assert lines[-1].startswith("error: ") and "Traceback" not in err, err
        assert sum(line.startswith("error: ") for line in lines) == 1, err
        err = lines[-1]
    return code, err


@pytest.fixture(scope="module")
def idx(fashion_subset) -> Path:
    """The first 600 real Fashion-MNIST training images as an IDX folder."""
    return fashion_subset(600)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, idx) -> Path:
    """One tiny checkpoint trained by ``minwa train`` (1 epoch of 600 images), shared by this module."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--quiet", "--data", str(idx), "--out", str(out), "--epochs", "1",
                 "--set", "data.val=", "--set", "data.val_fraction=0", "--set", "eval_every=0", "--set", 'model.kwargs={"widths": [8, 16]}',
                 "--set", "data.batch_size=64", "--set", "runtime.precision=fp32"]) == 0
    return out / "final"


@pytest.fixture
def copy_ckpt(ckpt, tmp_path):
    """A private copy of the shared checkpoint, to damage."""
    def make(name="c") -> Path:
        for suffix in (".safetensors", ".json"):
            shutil.copy(ckpt.with_suffix(suffix), (tmp_path / name).with_suffix(suffix))
        return tmp_path / name
    return make


@pytest.fixture(scope="module")
def shoe(tmp_path_factory) -> Path:
    """A real colour photograph as a JPEG file."""
    path = tmp_path_factory.mktemp("img") / "coffee.jpg"
    path.write_bytes(jpeg_bytes(photo("coffee")))
    return path


def edit_sidecar(path: Path, **changes) -> None:
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    sidecar.write_text(json.dumps(meta))


def flip_exponent_bit(weights: Path, name: str = "head.weight") -> tuple[float, float]:
    """Flip the top exponent bit of the first float32 of tensor ``name`` in a safetensors file."""
    raw = bytearray(weights.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    name = name if name in header else next(k for k in header if k.endswith(name))
    pos = 8 + n + header[name]["data_offsets"][0]
    before = struct.unpack("<f", raw[pos:pos + 4])[0]
    raw[pos + 3] ^= 0x40  # little endian: bit 30, the exponent's most significant bit
    after = struct.unpack("<f", raw[pos:pos + 4])[0]
    weights.write_bytes(bytes(raw))
    return before, after


# ---------------------------------------------------------------------------------------- checkpoints

def test_a_flipped_bit_in_the_weights_is_refused_by_eval_predict_and_init(copy_ckpt, idx, shoe, tmp_path, capsys):
    c = copy_ckpt()
    before, after = flip_exponent_bit(c.with_suffix(".safetensors"))
    assert abs(before) < 1 and abs(after) > 1e30  # e.g. -0.027 -> -9.2e36: still a valid file
    damaged = f"checkpoint {c.with_suffix('.safetensors')} is damaged: its weights do not match the checksum in its sidecar"
    for argv in (["eval", "--ckpt", c, "--data", idx, "--set", "limit=64"],
                 ["predict", "--ckpt", c, shoe],
                 ["train", "--quiet", "--init", c, "--data", idx, "--out", tmp_path / "ft", "--epochs", "1",
                  "--set", "data.val=", "--set", "data.val_fraction=0"]):
        code, err = run_cli(capsys, *argv)
        assert code == 2 and err == f"error: {damaged}", argv
    assert not (tmp_path / "ft" / "final.safetensors").exists()


def test_the_checksum_is_written_and_an_ensemble_member_is_checked(ckpt, copy_ckpt, shoe, capsys):
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert len(meta["weights_sha256"]) == 64
    good, bad = copy_ckpt("good"), copy_ckpt("bad")
    flip_exponent_bit(bad.with_suffix(".safetensors"))
    code, err = run_cli(capsys, "predict", "--ckpt", good, "--ckpt", bad, shoe)
    assert code == 2 and "bad.safetensors is damaged" in err


def test_a_sidecar_without_a_checksum_still_loads(copy_ckpt, shoe, capsys):
    c = copy_ckpt()
    edit_sidecar(c, weights_sha256=None)  # written before checksums existed
    code, err = run_cli(capsys, "predict", "--ckpt", c, shoe, "--json")
    assert code == 0, err


@pytest.mark.parametrize("changes, field", [
    ({"classes": list("abcdefg")}, "classes"),  # 7 names for 10 outputs: a broadcast traceback
    ({"std": [0.0]}, "std"),  # predict printed nan%
    ({"std": [float("inf")]}, "std"),
    ({"mean": [0.1, 0.2]}, "mean"),  # in_chans is 1
    ({"mean": "grey"}, "mean"),
    ({"scale": -3}, "scale"),
    ({"crop": 2.5}, "crop"),
    ({"crop": 64}, "crop"),  # larger than the scale (28)
    ({"num_classes": 0}, "num_classes"),
    ({"in_chans": "one"}, "in_chans"),
    ({"model_kwargs": [8, 16]}, "model_kwargs"),
    ({"model_kwargs": {"widths": "abc"}}, "widths"),  # refused by the model's constructor
    ({"model": 7}, "model"),
])
def test_a_sidecar_with_impossible_fields_is_one_sentence_naming_file_and_field(copy_ckpt, shoe, capsys, changes, field):
    c = copy_ckpt()
    edit_sidecar(c, **changes)
    code, err = run_cli(capsys, "predict", "--ckpt", c, shoe)
    assert code == 2 and str(c.with_suffix(".json")) in err and f"'{field}'" in err, err


# ---------------------------------------------------------------------------------------- predict inputs

def test_predict_says_a_jpeg_cut_to_a_third_is_truncated(ckpt, tmp_path, capsys):
    data = jpeg_bytes(photo("chelsea"))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    code, err = run_cli(capsys, "predict", "--ckpt", ckpt, cut)
    assert code == 2 and str(cut) in err and "truncated" in err, err
    # pack rejects the same file for the same reason, in the same words
    (tmp_path / "src" / "cat").mkdir(parents=True)
    shutil.copy(cut, tmp_path / "src" / "cat" / "cut.jpg")
    (tmp_path / "src" / "cat" / "whole.jpg").write_bytes(data)
    assert run_cli(capsys, "pack", "--quiet", tmp_path / "src", tmp_path / "shards")[0] == 1
    reasons = {r["reason"] for r in json.loads((tmp_path / "shards" / "manifest.json").read_text())["rejected"]}
    assert reasons == {"truncated image data"} and "truncated image data" in err


def big_png(path: Path, width: int, height: int) -> Path:
    """A real, complete grayscale PNG of ``width`` x ``height`` (zeros compress to a few hundred KB)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_200_megapixel_png_is_one_sentence_with_the_option_to_allow_it(ckpt, shoe, tmp_path, capsys):
    huge = big_png(tmp_path / "huge.png", 20000, 10000)
    code, err = run_cli(capsys, "predict", "--ckpt", ckpt, huge)
    assert code == 2 and str(huge) in err and "200,000,000 pixels" in err and "--max-pixels" in err, err
    # the limit is an option: a real photo over a lowered limit is refused, under a raised one it is read
    h, w = photo("coffee").shape[:2]
    code, err = run_cli(capsys, "predict", "--ckpt", ckpt, "--max-pixels", h * w - 1, shoe)
    assert code == 2 and f"{h * w:,} pixels" in err and "--max-pixels" in err, err
    assert run_cli(capsys, "predict", "--ckpt", ckpt, "--max-pixels", h * w, shoe)[0] == 0
    code, err = run_cli(capsys, "predict", "--ckpt", ckpt, "--max-pixels", "-5", shoe)
    assert code == 2 and "--max-pixels" in err


# ---------------------------------------------------------------------------------------- sources and pack

def test_a_symlink_loop_in_an_image_folder_is_followed_once(tmp_path, capsys):
    root = photo_folder(tmp_path / "src", per_class=2)
    (root / "coffee" / "again").symlink_to(root / "coffee", target_is_directory=True)  # a loop
    (root / "chelsea" / "up").symlink_to(root, target_is_directory=True)  # back to the root: a loop too
    from minwa.data import open_dataset

    ds = open_dataset(root)
    assert len(ds) == 6 and max(len(str(f)) for f in ds.files) < len(str(root)) + 40
    assert {Path(s["path"]).name for s in ds.skipped} == {"again", "up"}


def test_a_list_with_a_label_far_beyond_its_lines_is_refused(tmp_path, capsys, shoe):
    lst = tmp_path / "photos.lst"
    lst.write_text(f"0\t0\t{shoe}\n1\t1000000\t{shoe}\n")
    code, err = run_cli(capsys, "pack", "--quiet", lst, tmp_path / "out")
    assert code == 2 and str(lst) in err and "line 2" in err and "1000000" in err and "classes.txt" in err, err
    from minwa.data import open_dataset

    lst.write_text(f"0\t0\t{shoe}\n1\t4999\t{shoe}\n")
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(5000)))
    assert len(open_dataset(lst).classes) == 5000  # a class list that names them: what the user means
    lst.write_text(f"0\t0\t{shoe}\n1\t999\t{shoe}\n")  # below 1,000: fine without a class list
    (tmp_path / "classes.txt").unlink()
    assert len(open_dataset(lst).classes) == 1000


def test_pack_refuses_negative_workers(tmp_path, capsys, idx):
    code, err = run_cli(capsys, "pack", "--quiet", "--workers", "-3", idx, tmp_path / "out")
    assert code == 2 and "--workers" in err and not (tmp_path / "out").exists(), err


# ---------------------------------------------------------------------------------------- config options

@pytest.mark.parametrize("suffix, text", [("toml", "[optim]\nlr = inf\n"), ("yaml", "optim:\n  lr: .inf\n"),
                                          ("toml", "[augment]\nvignette_max = nan\n")])
def test_non_finite_numbers_in_config_files_are_refused(tmp_path, capsys, idx, suffix, text):
    cfg = tmp_path / f"c.{suffix}"
    cfg.write_text(text)
    code, err = run_cli(capsys, "train", "--quiet", "--config", cfg, "--data", idx, "--out", tmp_path / "r",
                        "--epochs", "0.1", "--set", "data.val=", "--set", "data.val_fraction=0")
    field = "optim.lr" if "lr" in text else "augment.vignette_max"
    assert code == 2 and field in err and "finite" in err, err
    assert not (tmp_path / "r" / "final.safetensors").exists()


@pytest.mark.parametrize("override, field", [
    ("runtime.threads=-1", "runtime.threads"),
    ("runtime.device=tpu", "runtime.device"),
    ("runtime.device=cuda:x", "runtime.device"),
    ("runtime.precision=fp8", "runtime.precision"),
    ('model.kwargs={"widths": "abc"}', "widths"),
    ('model.kwargs={"widths": [8, 0]}', "widths"),
    ('model.kwargs={"depth": 3}', "depth"),
    ('model.kwargs={"dropout": 2.0}', "dropout"),  # refused by the constructor itself (built on meta)
    ("data.cache_gb=-1", "data.cache_gb"),
    ("data.workers=-2", "data.workers"),
    ("parallel.bucket_mb=0", "parallel.bucket_mb"),
    ("optim.lr=1e999", "optim.lr"),
])
def test_impossible_options_are_one_sentence_before_any_data_is_read(tmp_path, capsys, override, field):
    # the data path does not exist: the option must be refused first
    code, err = run_cli(capsys, "train", "--quiet", "--data", tmp_path / "nowhere", "--out", tmp_path / "r",
                        "--set", override)
    assert code == 2 and field in err and "nowhere" not in err, err
    if "kwargs" in override:
        assert "fashion-net" in err


def test_eval_and_predict_refuse_an_unknown_device(ckpt, shoe, capsys):
    code, err = run_cli(capsys, "predict", "--ckpt", ckpt, "--device", "tpu", shoe)
    assert code == 2 and "tpu" in err

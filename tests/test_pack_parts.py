"""Packing on many machines (issue 13): `minwa pack SRC OUT --part K/N` for every K, then `--merge OUT`, gives
the very files one machine's `minwa pack` writes (same shard bytes, same manifest but its dates) for N = 1,
2 and 3, side by side in one folder, gathered from separate folders, under torchrun, and after a part was
killed and run again; the merge refuses parts that disagree, one sentence each."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import kill_pack_after, odd_folder, photo_folder, small_idx

from minwa.cli import main
from minwa.data import open_dataset, pack, verify
from minwa.data.merge import merge
from minwa.data.parts import Part
from minwa.errors import MinwaError
from minwa.utils.folder_lock import FolderLock

ROOT = Path(__file__).resolve().parents[1]
SHARD = 64  # 600 images -> 10 shards: parts of 3 hold 4, 3 and 3


@pytest.fixture(scope="module")
def fm(tmp_path_factory):
    """600 real Fashion-MNIST training images (synthetic 28x28 ones where absent), and their single pack."""
    from conftest import FASHION, fashion_available

    src = tmp_path_factory.mktemp("fm") / "idx"
    small_idx(src, n=600, real=FASHION if fashion_available() else None)
    single = tmp_path_factory.mktemp("single") / "out"
    pack(src, single, shard_size=SHARD, workers=1, progress=False)
    return src, single


def _files(folder: Path) -> dict[str, str]:
    """SHA-256 of every shard file (tar, index, completion record)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*"))}


def _same_pack(a: Path, b: Path) -> None:
    assert _files(a) == _files(b) and len(_files(a)) > 0
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    for m in (ma, mb):
        for key in ("created", "pack_seconds", "parts"):
            m.pop(key, None)
    assert ma == mb
    assert verify(b) == []


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minwa", "pack", *args, "--quiet"], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def test_parts_merge_into_the_single_pack_for_1_2_and_3_parts(tmp_path, fm):
    src, single = fm
    # N = 1 and N = 2 in this process, into one folder
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        for k in range(n):
            m = pack(src, out, shard_size=SHARD, workers=1, progress=False, part=Part(k, n))
            assert [s["name"] for s in m["shards"]] == [f"shard-{j:05d}.tar" for j in range(k, 10, n)]
        assert not (out / "manifest.json").exists()
        assert merge(out)["parts"] == n
        _same_pack(single, out)
    # N = 3 through the command line, the three parts running at the same time into one folder
    out = tmp_path / "n3"
    procs = [_cli(str(src), str(out), "--shard-size", str(SHARD), "--workers", "1", "--part", f"{k}/3") for k in range(3)]
    for p in procs:
        assert p.wait(120) == 0, p.stdout.read()
        assert "Once all 3 parts have finished" in p.stdout.read()
    merged = subprocess.run([sys.executable, "-m", "minwa", "pack", "--merge", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert merged.returncode == 0 and "merged 3 parts: 600 images (10 classes) into 10 shards" in merged.stdout
    _same_pack(single, out)
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-{k}-of-3.json" for k in range(3)]
    # a later whole pack keeps every shard (the same plan) and drops the part manifests it supersedes
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    pack(src, out, shard_size=SHARD, workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")} == before
    assert not list(out.glob("part-*"))


def test_parts_packed_on_separate_disks_are_gathered_then_merged(tmp_path, fm):
    """Each machine packs its part into its own OUT; copying the files into one folder and merging there
    gives the single pack. A bad copy is caught by the merge."""
    src, single = fm
    for k in range(2):
        pack(src, tmp_path / f"host{k}", shard_size=SHARD, workers=1, progress=False, part=Part(k, 2))
    gathered = tmp_path / "gathered"
    gathered.mkdir()
    for k in range(2):
        for f in (tmp_path / f"host{k}").iterdir():
            shutil.copy2(f, gathered / f.name)
    tar = gathered / "shard-00003.tar"
    good = tar.read_bytes()
    tar.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(MinwaError, match=r"shard-00003.tar does not match the checksum part 1 of 2 recorded"):
        merge(gathered)
    assert not (gathered / "manifest.json").exists()
    tar.write_bytes(good)
    merge(gathered)
    _same_pack(single, gathered)


def test_parts_with_rejected_inputs_and_classes_merge_like_a_single_pack(tmp_path):
    """An ImageFolder of odd inputs (some rejected, a file outside the class folders): the merged manifest
    lists the same rejected inputs, classes and counts, and `--merge` exits 1 as `pack` does."""
    expected = odd_folder(tmp_path / "odd")
    pack(tmp_path / "odd", tmp_path / "single", shard_size=3, workers=1, progress=False)
    out = tmp_path / "parts"
    for k in range(3):
        assert main(["pack", str(tmp_path / "odd"), str(out), "--shard-size", "3", "--part", f"{k}/3", "--quiet"]) == 0
    assert main(["pack", "--merge", str(out)]) == 1
    _same_pack(tmp_path / "single", out)
    rejected = json.loads((out / "manifest.json").read_text())["rejected"]
    assert len(rejected) == sum(reason is not None for reason in expected.values()) == 6


def _kill_part_mid_way(src: Path, out: Path, part: str) -> None:
    """Run one part through the CLI, slowed down per image, and SIGKILL it once it has finished a shard."""
    args = [str(src), str(out), "--shard-size", str(SHARD), "--workers", "1", "--part", part, "--quiet"]
    kill_pack_after(f"from minwa.cli import main; sys.exit(main(['pack', *{args!r}]))", out, 1, ROOT)


def test_a_killed_part_is_finished_by_running_it_again(tmp_path, fm):
    src, single = fm
    out = tmp_path / "out"
    args = [str(src), str(out), "--shard-size", str(SHARD), "--workers", "1"]
    _kill_part_mid_way(src, out, "1/3")
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar") if p.with_suffix(".json").exists()}
    assert 1 <= len(done) < 3 and not (out / "part-1-of-3.json").exists()
    others = [_cli(*args, "--part", f"{k}/3") for k in (0, 2)]  # beside the killed part's leftovers
    assert [p.wait(60) for p in others] == [0, 0]
    with pytest.raises(MinwaError, match=r"1 part of 3 is missing \(no part-K-of-3.json for K = 1\): run `minwa pack "):
        merge(out)
    rerun = _cli(*args, "--part", "1/3")
    assert rerun.wait(60) == 0, rerun.stdout.read()
    assert {p: (out / p).stat().st_mtime_ns for p in done} == done  # its finished shards were kept
    assert not list(out.glob(".*.tmp"))
    merge(out)
    _same_pack(single, out)


def test_torchrun_packs_the_parts(tmp_path, fm):
    """`torchrun -m minwa pack SRC OUT --part auto`: K and N from RANK and WORLD_SIZE."""
    src, single = fm
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                          "minwa", "pack", str(src), str(out), "--shard-size", str(SHARD), "--part", "auto", "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "packed part 0 of 2" in run.stdout and "packed part 1 of 2" in run.stdout
    merge(out)
    _same_pack(single, out)


def test_merge_refuses_parts_that_disagree(tmp_path):
    src = tmp_path / "photos"
    photo_folder(src, per_class=4)
    out = tmp_path / "out"

    def part(k, n=3, **kw):
        pack(src, out, shard_size=2, workers=1, progress=False, part=Part(k, n), **kw)

    with pytest.raises(MinwaError, match="not found"):
        merge(tmp_path / "nowhere")
    out.mkdir()
    with pytest.raises(MinwaError, match="holds no part manifests"):
        merge(out)
    part(0)
    with pytest.raises(MinwaError, match=r"not merged yet; join them with 'minwa pack --merge .*out' once every part"):
        open_dataset(out)  # a user who trains on a pack in parts before merging is told what to run
    with pytest.raises(MinwaError, match=r"2 parts of 3 are missing \(no part-K-of-3.json for K = 1, 2\)"):
        merge(out)
    part(1, seed=1)
    part(2)
    with pytest.raises(MinwaError, match=r"part 1 of 3 was packed with other settings than part 0 \(seed=1 vs 0\)"):
        merge(out)
    part(1)
    part(0, n=2)  # an earlier split left behind
    with pytest.raises(MinwaError, match=r"holds parts of 2 different splits \(of 2: part-0-of-2.json; of 3: "
                                         r"part-0-of-3.json, part-1-of-3.json, part-2-of-3.json\)"):
        merge(out)
    (out / "part-0-of-2.json").unlink()
    with FolderLock(out, "minwa pack --part 2/3", Part(2, 3).lock_name):  # a part running: no merge, no whole pack
        with pytest.raises(MinwaError, match=r"part 2 of 3 is still running: .* is in use by `minwa pack --part 2/3`"):
            merge(out)
        (out / "part-2-of-3.json").rename(out / "moved")
        with pytest.raises(MinwaError, match=r"part 2 of 3 is still running"):
            merge(out)
        with pytest.raises(MinwaError, match=r"part 2 of 3 is still running"):
            pack(src, out, shard_size=2, workers=1, progress=False)
        (out / "moved").rename(out / "part-2-of-3.json")
    merge(out)  # agreeing parts merge
    assert verify(out) == []
    # a part that sees another class list, or another listing of the same classes
    (src / "zebra").mkdir()
    (src / "zebra" / "z.jpg").write_bytes(next(src.rglob("*.jpg")).read_bytes())
    part(1)
    with pytest.raises(MinwaError, match=r"part 1 of 3 saw other classes than part 0 \(4 vs 3 classes\)"):
        merge(out)
    shutil.rmtree(src / "zebra")
    first = next(src.rglob("*.jpg"))
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    part(1)
    with pytest.raises(MinwaError, match=r"part 1 of 3 listed another source than part 0 \(plan "):
        merge(out)
    assert not (out / "manifest.json").exists()  # a part run removes the merged manifest; a refusal writes none


@pytest.mark.parametrize("argv, words", [
    (["--part", "3/2"], "--part 3/2: K must be 0 to 1 (parts are counted from 0)"),
    (["--part", "0/0"], "--part 0/0: the number of parts N must be at least 1"),
    (["--part", "half"], "--part half is not K/N"),
    (["--part", "auto"], "--part auto reads RANK and WORLD_SIZE (torchrun sets them), which are not set"),
    (["--merge", "x"], "--merge OUT takes no SRC, OUT or --part"),
])
def test_part_and_merge_options_are_checked_in_one_sentence(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["pack", str(tmp_path), str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_part_auto_reads_torchrun_variables():
    assert Part.parse("auto", {"RANK": "2", "WORLD_SIZE": "3"}) == Part(2, 3)
    with pytest.raises(MinwaError, match=r"--part 3/3 \(from RANK=3, WORLD_SIZE=3\): K must be 0 to 2"):
        Part.parse("auto", {"RANK": "3", "WORLD_SIZE": "3"})
    assert Part.parse(" 1 / 4 ", {}) == Part(1, 4) and list(Part(1, 4).shards(10)) == [1, 5, 9]


def test_a_pack_without_its_manifest_says_what_to_run(tmp_path, fm):
    """Shards without manifest.json: a whole pack cut short says 'run it again', parts say 'merge'."""
    src, single = fm
    cut = tmp_path / "cut"
    shutil.copytree(single, cut)
    (cut / "manifest.json").unlink()
    with pytest.raises(MinwaError, match="holds shards but no manifest.json: the pack did not finish"):
        open_dataset(cut)
    assert any("the pack did not finish" in problem for problem in verify(cut))

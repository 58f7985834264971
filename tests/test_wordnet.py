"""WordNet names and the hypernym hierarchy (issue #13): a small WordNet of our own written in the wndb
format (exact expected output), Debian's real WordNet 3.0 with ImageNet-1k's ids, and ``eval --topk
--hierarchy`` / ``predict --hierarchy`` through the CLI on a small network trained on real Fashion-MNIST
images whose ten classes are named by ImageNet WordNet ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from minwa.cli import main
from minwa.errors import MinwaError
from minwa.pretrained.imagenet import imagenet1k
from minwa.wordnet import Hierarchy, WordNet, display_names
from minwa.wordnet.database import DEFAULT_FOLDER
from model_fixtures import train_tiny_fashion

REAL = Path(DEFAULT_FOLDER) / "data.noun"
needs_wordnet = pytest.mark.skipif(not REAL.is_file(), reason="WordNet 3.0 is not installed "
                                   "(apt-get install wordnet-base; scripts/ensure-wordnet.sh)")

# ---------------------------------------------------------------- a small WordNet of our own

# key: (words, pointers). dog has two hypernyms (canine, pet) that meet again at animal: a DAG;
# rex is an instance (@i) of dog; cat has 11 words (w_cnt is hexadecimal: 0b).
TREE = {
    "entity": (["entity"], []),
    "animal": (["animal", "beast"], [("@", "entity"), ("~", "canine")]),
    "canine": (["canine"], [("@", "animal"), ("~", "dog")]),
    "pet": (["pet"], [("@", "animal")]),
    "dog": (["dog", "domestic dog", "Canis familiaris"], [("@", "canine"), ("@", "pet"), ("#m", "animal")]),
    "cat": ([f"cat{i}" if i else "cat" for i in range(11)], [("@", "pet")]),
    "retriever": (["retriever"], [("@", "dog")]),
    "terrier": (["terrier"], [("@", "dog")]),
    "tabby": (["tabby", "tabby cat"], [("@", "cat")]),
    "rex": (["Rex"], [("@i", "dog")]),
}


def write_wordnet(folder: Path, tree=TREE) -> dict[str, str]:
    """``folder/data.noun`` in WordNet's format, each synset at its real byte offset; returns key -> wnid.
    Offsets are 8 digits whatever their value, so one pass with zeros gives every line's length."""
    header = "  1 A small WordNet written by tests/test_wordnet.py in the wndb(5) format.  \n"

    def line(off, key):
        words, ptrs = tree[key]
        fields = [f"{off[key]:08d}", "03", "n", f"{len(words):02x}"]
        fields += [x for w in words for x in (w.replace(" ", "_"), "0")]
        fields.append(f"{len(ptrs):03d}")
        fields += [x for sym, k in ptrs for x in (sym, f"{off[k]:08d}", "n", "0000")]
        return " ".join(fields) + f" | the gloss of {key}  \n"

    zero = dict.fromkeys(tree, 0)
    off, at = {}, len(header)
    for key in tree:
        off[key] = at
        at += len(line(zero, key))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.noun").write_text(header + "".join(line(off, k) for k in tree), encoding="ascii")
    return {k: f"n{v:08d}" for k, v in off.items()}


@pytest.fixture()
def small(tmp_path):
    ids = write_wordnet(tmp_path / "wn")
    wn = WordNet(tmp_path / "wn")
    yield wn, ids
    wn.close()


def test_small_wordnet_is_parsed_exactly(small):
    wn, ids = small
    dog = wn.synset(ids["dog"])
    assert dog.words == ("dog", "domestic dog", "Canis familiaris") and dog.name == "dog"
    assert dog.hypernyms == (ids["canine"], ids["pet"])  # not the member meronym #m, not the hyponym ~
    assert dog.gloss == "the gloss of dog"
    assert wn.synset(ids["rex"]).hypernyms == (ids["dog"],)  # an instance hypernym counts
    assert len(wn.synset(ids["cat"]).words) == 11 and wn.synset(ids["cat"]).hypernyms == (ids["pet"],)
    assert wn.ancestors(ids["retriever"]) == {ids[k] for k in ("dog", "canine", "pet", "animal", "entity")}
    # ids that name no synset here: inside a line, the header, past the end, not an id at all
    inside = f"n{int(ids['dog'][1:]) + 3:08d}"
    assert [wn.synset(w) for w in (inside, "n00000000", "n00000010", "n99999999", "dog")] == [None] * 5


def test_sums_count_each_label_once_in_the_dag(small):
    wn, ids = small
    labels = [ids[k] for k in ("retriever", "terrier", "tabby")]
    h = Hierarchy(labels, wn)
    assert h.nodes == sorted(ids[k] for k in ("entity", "animal", "canine", "pet", "dog", "cat")) and not h.internal
    sums = h.node_probs(torch.tensor([[0.5, 0.3, 0.2]]))[0]
    got = {h.node_names[i].split(" ", 1)[1]: round(float(s), 6) for i, s in enumerate(sums)}
    # retriever reaches animal by two paths (dog-canine-animal, dog-pet-animal) and counts once: 1.0, not 1.8
    assert got == {"entity": 1.0, "animal": 1.0, "pet": 1.0, "canine": 0.8, "dog": 0.8, "cat": 0.2}


def test_answer_is_the_most_specific_synset_over_the_threshold(small):
    wn, ids = small
    labels = [ids[k] for k in ("retriever", "terrier", "tabby", "rex")]
    h = Hierarchy(labels, wn)
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    # 0.9: pet, animal and entity all hold everything; pet is the deepest of them
    assert [(a.wnid, a.labels, round(a.probability, 6)) for a in h.answers(p, 0.9)] == [(ids["pet"], 4, 1.0)]
    assert [(a.wnid, a.labels) for a in h.answers(p, 0.7)] == [(ids["dog"], 3)]  # retriever + terrier + Rex
    assert [(a.wnid, a.is_label) for a in h.answers(p, 0.5)] == [(ids["retriever"], True)]
    a = h.answers(p, 0.7)[0]
    assert h.covers(a, 0) and h.covers(a, 3) and not h.covers(a, 2)
    assert [h.classes[j] for j, _ in h.beneath(a, p[0])] == [ids["retriever"], ids["terrier"], ids["rex"]]
    assert h.nodes[h.lowest_common(0, 1)] == ids["dog"]
    assert h.nodes[h.lowest_common(0, 2)] == ids["pet"]  # pet and animal hold the same labels: the deeper


def test_a_label_that_is_an_ancestor_of_another_is_its_own_leaf(small):
    """The 21k case: "dog" and "retriever" both labels. The softmax makes them exclusive outputs; "dog" means
    a dog whose breed was not named, so it counts toward dog and above, and toward no breed."""
    wn, ids = small
    labels = [ids[k] for k in ("dog", "retriever", "terrier", "tabby")]
    h = Hierarchy(labels, wn)
    assert h.internal == [ids["dog"]] and h.label_names[0] == f"{ids['dog']} dog (the label itself)"
    p = torch.tensor([[0.4, 0.3, 0.1, 0.2]])
    sums = dict(zip(h.nodes, h.node_probs(p)[0].tolist()))
    assert sums[ids["dog"]] == pytest.approx(0.8) and sums[ids["pet"]] == pytest.approx(1.0)
    assert [(a.wnid, a.labels) for a in h.answers(p, 0.5)] == [(ids["dog"], 3)]
    assert [(a.name, a.is_label) for a in h.answers(p, 0.35)] == [(f"{ids['dog']} dog (the label itself)", True)]
    assert h.nodes[h.lowest_common(0, 1)] == ids["dog"]  # "dog" for a retriever: wrong label, right up to dog


def test_classes_that_are_not_wordnet_ids_are_refused(small):
    wn, ids = small
    with pytest.raises(MinwaError, match="1 of the 2 classes are not, e.g. 'T-shirt/top'"):
        Hierarchy([ids["tabby"], "T-shirt/top"], wn)
    with pytest.raises(MinwaError, match="e.g. 'n00000010'"):
        Hierarchy([ids["tabby"], "n00000010"], wn)


def test_display_names_fall_back_to_descriptions_then_ids(tmp_path):
    ids = write_wordnet(tmp_path / "wn")
    names, note = display_names([ids["dog"], "n00000010", "T-shirt/top"], tmp_path / "wn")
    assert names == [f"{ids['dog']} dog", "n00000010", "T-shirt/top"] and note == ""
    assert display_names(["T-shirt/top"], tmp_path / "missing") == (["T-shirt/top"], "")  # no id: WordNet not needed
    names, note = display_names(["n01440764", "n01443537"], tmp_path / "missing", ["tench, Tinca tinca"])
    assert names == ["n01440764 tench", "n01443537"]
    assert note.startswith("1 classes are shown as WordNet ids only") and "apt-get install wordnet-base" in note
    with pytest.raises(MinwaError, match=r"not in .*missing \(no data.noun\): install Debian's wordnet-base"):
        WordNet(tmp_path / "missing")


# ---------------------------------------------------------------- Debian's WordNet 3.0, ImageNet-1k ids

@needs_wordnet
def test_imagenet1k_names_from_debian_wordnet():
    ids, lemmas = imagenet1k()
    t0 = time.perf_counter()
    names, note = display_names(ids)
    seconds = time.perf_counter() - t0
    assert note == "" and names[0] == "n01440764 tench" and names[ids.index("n02099601")] == "n02099601 golden retriever"
    # WordNet's first word is the first lemma the shipped ImageNet list gives (from timm), for all 1,000
    assert [n.split(" ", 1)[1] for n in names] == [lem.split(",")[0] for lem in lemmas]
    assert seconds < 1.0, seconds


@needs_wordnet
def test_imagenet1k_hierarchy_dogs_roll_up_to_dog():
    ids, _ = imagenet1k()
    wn = WordNet()
    t0 = time.perf_counter()
    h = Hierarchy(ids, wn)
    seconds = time.perf_counter() - t0
    assert seconds < 2.0, seconds  # ~0.3 s on the 2-core machine under load
    assert len(h.nodes) == 860 and h.internal == []  # ImageNet-1k's labels are leaves of one another
    dog = h.node_index["n02084071"]
    assert h.node_names[dog] == "n02084071 dog" and len(h.under[dog]) == 118
    # the DAG: dog is both a canine and a domestic animal; the two paths meet at animal
    assert wn.synset("n02084071").hypernyms == ("n02083346", "n01317541")
    golden, labrador, chihuahua = (ids.index(w) for w in ("n02099601", "n02099712", "n02085620"))
    p = torch.zeros(3, 1000)
    p[0, golden] = 1.0
    p[1, golden], p[1, labrador], p[1, 0] = 0.5, 0.46, 0.04
    p[2, golden], p[2, chihuahua], p[2, 0] = 0.5, 0.46, 0.04
    sums = h.node_probs(p)
    assert float(sums[0, h.node_index["n00015388"]]) == 1.0  # animal: once, not twice
    assert float(sums[0, h.node_index["n00001740"]]) == 1.0  # entity
    answers = h.answers(p, 0.9)
    assert [(a.wnid, a.labels) for a in answers] == [("n02099601", 1), ("n02099029", 5), ("n02084071", 118)]
    assert answers[1].name == "n02099029 retriever" and answers[2].name == "n02084071 dog"
    assert answers[2].probability == pytest.approx(0.96)
    wn.close()


# ---------------------------------------------------------------- through the CLI, on a trained network

# Fashion-MNIST's ten classes renamed by ImageNet ids: the tops are retrievers, the shoes cats, the bag a tench
WNIDS = ["n02099601", "n02099712", "n02099267", "n02085620", "n02099849",
         "n02123045", "n02099429", "n02123159", "n01440764", "n02123394"]


@pytest.fixture(scope="module")
def wnid_model(tmp_path_factory, fashion_dir):
    """deepimage-tiny trained briefly on 3,000 real Fashion-MNIST images whose classes carry WordNet ids,
    and an ImageFolder of 300 real test images in folders named by those ids."""
    from PIL import Image

    from minwa.data import open_dataset

    root = tmp_path_factory.mktemp("wnid")
    ckpt = train_tiny_fashion(fashion_dir, root / "tiny", n=3000, epochs=2, batch=200, classes=WNIDS)
    test = open_dataset(fashion_dir, "test")
    for i in range(300):
        folder = root / "val" / WNIDS[int(test.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.image(i)[..., 0]).save(folder / f"{i:04d}.png")
    return ckpt, root / "val"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_eval_topk_any_k(wnid_model, tmp_path, capsys):
    """--topk 1,2,20 over 10 classes: each k reported; top-20 is 0% and the table says why it is not shown.
    Without WordNet the classes are shown as ids, with one note."""
    ckpt, val = wnid_model
    code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--topk", "1,2,20", "--json",
                             "--out", tmp_path / "a", "--set", f"wordnet={tmp_path / 'none'}")
    assert code == 0, err
    report = json.loads(out)
    assert report["topk"] == [1, 2, 20] and set(report["topk_errors"]) == {"1", "2", "20"}
    errors = report["topk_errors"]
    assert errors["1"] == report["top1_error"] and errors["20"] == 0.0 == report["topk_error"]
    assert errors["2"] < errors["1"] < 0.5  # far better than chance (0.9)
    labels = np.repeat(np.arange(10), [len(list((val / w).iterdir())) for w in WNIDS])
    assert report["images"] == len(labels) == 300
    assert report["names"] == WNIDS and err.startswith("note: 10 classes are shown as WordNet ids only")
    code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--topk", "1,2,20", "--out", tmp_path / "b",
                             "--set", f"wordnet={tmp_path / 'none'}")
    out = " ".join(out.split())  # rich wraps lines at the terminal's width
    assert code == 0 and "top-2 error" in out and "(top-20 not shown: with 10 classes any 20 guesses" in out


@needs_wordnet
def test_eval_hierarchy_names_and_answers(wnid_model, tmp_path, capsys):
    ckpt, val = wnid_model
    code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--hierarchy", "--json", "--out", tmp_path / "a")
    assert code == 0, err
    report = json.loads(out)
    assert report["names"][0] == "n02099601 golden retriever" and report["per_class"][0]["class"] == "n02099601"
    h = report["hierarchy"]
    assert h["threshold"] == 0.9 and 1 - report["top1_error"] <= h["answer_accuracy"] <= 1
    assert h["mean_labels_per_answer"] >= 1 and h["internal_labels"] == []
    assert sum(m["count"] for m in h["mistakes_by_common_ancestor"]) <= h["top1_mistakes"]
    assert {m["name"] for m in h["mistakes_by_common_ancestor"]} <= {"n02099029 retriever", "n02084071 dog",
                                                                     "n02121808 domestic cat", "n01471682 vertebrate"}
    # a tiny threshold answers with the top label itself; 1.0 with the synset holding everything
    for threshold, accuracy in ((0.01, 1 - report["top1_error"]), (1.0, 1.0)):
        code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--hierarchy", "--json",
                                 "--out", tmp_path / f"t{threshold}", "--set", f"hierarchy_threshold={threshold}")
        assert json.loads(out)["hierarchy"]["answer_accuracy"] == pytest.approx(accuracy)
    code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--hierarchy", "--out", tmp_path / "c")
    out = " ".join(out.split())  # rich wraps lines at the terminal's width
    assert "n02099601 golden retriever" in out and "hierarchy (WordNet" in out and "answers right" in out


@needs_wordnet
def test_predict_hierarchy_through_the_cli(wnid_model, capsys):
    ckpt, val = wnid_model
    images = sorted((val / "n02099601").iterdir())[:3] + sorted((val / "n02123045").iterdir())[:3]
    code, out, err = run_cli(capsys, "predict", "--ckpt", ckpt, *images, "--hierarchy", "--json")
    assert code == 0, err
    for r in json.loads(out):
        h = r["hierarchy"]
        assert h["probability"] >= 0.9 - 1e-6 and h["threshold"] == 0.9
        assert r["top"][0]["name"].split(" ", 1)[0] == r["top"][0]["class"] and " " in r["top"][0]["name"]
        if not h["is_label"]:  # the likeliest labels beneath the answer, most probable first
            p = [b["probability"] for b in h["beneath"]]
            assert p == sorted(p, reverse=True) and h["labels"] >= len(p) >= 1
    code, out, err = run_cli(capsys, "predict", "--ckpt", ckpt, *images[:2], "--hierarchy", "--threshold", "0.99")
    assert code == 0 and "golden retriever" in out and "hierarchy (99%): n0" in out


def test_predict_hierarchy_without_wordnet_is_one_sentence(wnid_model, tmp_path, capsys):
    ckpt, val = wnid_model
    image = next((val / "n02099601").iterdir())
    code, out, err = run_cli(capsys, "predict", "--ckpt", ckpt, image, "--hierarchy", "--wordnet", tmp_path / "none")
    assert code == 2 and "\n" not in err and "apt-get install wordnet-base" in err and "--wordnet DIR" in err
    code, out, err = run_cli(capsys, "eval", "--ckpt", ckpt, "--data", val, "--hierarchy", "--out", tmp_path / "o",
                             "--set", f"wordnet={tmp_path / 'none'}")
    assert code == 2 and "apt-get install wordnet-base" in err.splitlines()[-1]
    # plain names: the ids, and one note
    code, out, err = run_cli(capsys, "predict", "--ckpt", ckpt, image, "--wordnet", tmp_path / "none")
    assert code == 0 and "n02099601" in out and err.startswith("note: 10 classes are shown as WordNet ids only")
    code, out, err = run_cli(capsys, "predict", "--ckpt", ckpt, image, "--hierarchy", "--threshold", "0")
    assert code == 2 and err == "error: --threshold must be in (0, 1], got 0.0"


@needs_wordnet
def test_the_service_names_classes_as_predict_does(wnid_model):
    from minwa.serve.config import ServeConfig
    from minwa.serve.engine import Engine

    ckpt, _ = wnid_model
    engine = Engine(ServeConfig(ckpts=[str(ckpt)]))
    top = engine.top(torch.tensor([0.1] + [0.04375] * 8 + [0.55]), 2)
    assert [(t["class"], t["name"]) for t in top] == [("n02123394", "n02123394 Persian cat"),
                                                      ("n02099601", "n02099601 golden retriever")]

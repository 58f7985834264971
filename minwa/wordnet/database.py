"""WordNet 3.0's noun database read straight from its own files (``man 5 wndb``), as Debian's
``wordnet-base`` installs them in /usr/share/wordnet.

An ImageNet class folder ``n02099601`` is a noun synset: the eight digits are the byte offset of the
synset's line in ``data.noun``. So a name or a hypernym is one seek into the memory-mapped file, and only
the synsets asked for (and their ancestors) are ever parsed: the 15 MB file is never read whole.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

from minwa.errors import MinwaError

DEFAULT_FOLDER = "/usr/share/wordnet"
PACKAGE = "wordnet-base"
WNID = re.compile(r"n\d{8}")
HYPERNYMS = (b"@", b"@i")  # hypernym, instance hypernym


def is_wnid(name: str) -> bool:
    """``n`` + eight digits: an ImageNet class named by its WordNet 3.0 noun offset."""
    return bool(WNID.fullmatch(name))


@dataclass(frozen=True)
class Synset:
    wnid: str  # "n02084071"
    words: tuple[str, ...]  # ("dog", "domestic dog", "Canis familiaris"): WordNet's order, most common first
    hypernyms: tuple[str, ...]  # wnids of the direct hypernyms (two for a few synsets: WordNet is a DAG)
    gloss: str

    @property
    def name(self) -> str:
        return self.words[0]


class WordNetMissing(MinwaError):
    """The noun database is not where minwa was told to look."""

    def __init__(self, folder: Path):
        super().__init__(f"WordNet's noun database is not in {folder} (no data.noun): install Debian's "
                         f"{PACKAGE} (`apt-get install {PACKAGE}`), or name the folder that holds data.noun "
                         f"with the wordnet option (--wordnet DIR; eval: --set wordnet=DIR)")


class WordNet:
    """The noun synsets of one WordNet installation, parsed on demand and kept (one dict per instance)."""

    def __init__(self, folder: str | Path = ""):
        self.folder = Path(folder or DEFAULT_FOLDER)
        path = self.folder / "data.noun"
        if not path.is_file() or path.stat().st_size == 0:
            raise WordNetMissing(self.folder)
        with open(path, "rb") as f:
            self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._synsets: dict[str, Synset | None] = {}

    def synset(self, wnid: str) -> Synset | None:
        """The synset a wnid names, or None when it names none in this database (not a synset's offset)."""
        if wnid not in self._synsets:
            self._synsets[wnid] = self._read(wnid) if is_wnid(wnid) else None
        return self._synsets[wnid]

    def _read(self, wnid: str) -> Synset | None:
        offset = int(wnid[1:])
        data = self._data
        if offset >= len(data) or (offset and data[offset - 1] != 0x0A) or data[offset:offset + 8] != wnid[1:].encode():
            return None
        end = data.find(b"\n", offset)
        return parse_line(data[offset:end if end >= 0 else len(data)])

    def wnids(self, limit: int) -> list[str]:
        """The first ``limit`` noun synsets in file order (fewer when there are fewer): real class names
        for a synthetic data set of ImageNet-21k's size (``minwa.synth.imagenet21k``)."""
        found: list[str] = []
        at = 0
        while len(found) < limit and at < len(self._data):
            end = self._data.find(b"\n", at)
            end = len(self._data) if end < 0 else end
            if self._data[at:at + 1].isdigit():  # the licence lines start with spaces
                found.append("n" + self._data[at:at + 8].decode())
            at = end + 1
        return found

    def ancestors(self, wnid: str) -> set[str]:
        """Every synset above ``wnid`` by hypernym links, each once however many paths reach it."""
        seen: set[str] = set()
        todo = list(self.synset(wnid).hypernyms) if self.synset(wnid) else []
        while todo:
            w = todo.pop()
            if w not in seen:
                seen.add(w)
                s = self.synset(w)
                todo.extend(s.hypernyms if s else ())
        return seen

    def close(self) -> None:
        self._data.close()


def parse_line(line: bytes) -> Synset:
    """One ``data.noun`` line: ``offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt ptr... | gloss``."""
    head, _, gloss = line.decode("utf-8", "replace").partition(" | ")
    f = head.split()
    n_words = int(f[3], 16)
    words = tuple(f[4 + 2 * i].replace("_", " ") for i in range(n_words))
    at = 4 + 2 * n_words
    n_ptrs = int(f[at])
    ptrs = [f[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(n_ptrs)]
    hypernyms = tuple(f"n{p[1]}" for p in ptrs if p[0].encode() in HYPERNYMS and p[2] == "n")
    return Synset(wnid=f"n{f[0]}", words=words, hypernyms=hypernyms, gloss=gloss.strip())

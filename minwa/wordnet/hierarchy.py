"""Softmax probabilities summed up WordNet's hypernym tree, so that "dog 96%" is said when the breed is not.

Every synset above some label (a *node*) gets the summed probability of the labels beneath it. WordNet is a
DAG (``dog`` is both a ``canine`` and a ``domestic animal``, and the two paths meet again at ``animal``), so
a node's labels are a *set*: each label counts once however many paths lead up from it.

Labels that are themselves ancestors of other labels (ImageNet-21k has ``dog`` and ``golden retriever``):
the softmax still makes the labels exclusive *outputs*, but the label ``dog`` means "a dog whose finer
class was not named", not "every dog". So an internal label is kept as a leaf of its own, shown as
``dog (the label itself)``, whose probability counts toward the node ``dog`` and everything above it and
toward no breed; the node ``dog`` holds that leaf and the breed labels. Summing the label's probability
into the breeds, or dropping it, would either invent a breed or lose the model's own answer.

The *answer* at a threshold t is the most specific candidate (a label, or a node) holding at least t of
the probability: the one with the fewest labels beneath it, then the more probable, then the deeper synset.
A single label at or above t is its own answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minwa.errors import MinwaError
from minwa.wordnet.database import WordNet, is_wnid
from minwa.wordnet.names import display_name

TOLERANCE = 1e-6  # float sums of a softmax: the root's 0.9999999 still counts as 1
_LABEL_DEPTH = 1e9


@dataclass
class Answer:
    wnid: str  # the label or node that answers
    name: str  # its display name ("n02084071 dog"; "... (the label itself)": an internal label as a leaf)
    probability: float
    labels: int  # labels beneath it (1 for a label)
    is_label: bool

    def to_dict(self) -> dict:
        return {"wnid": self.wnid, "name": self.name, "probability": self.probability, "labels": self.labels,
                "is_label": self.is_label}


class Hierarchy:
    """The nodes above a set of WordNet-id labels, and a sparse nodes × labels matrix of 0/1 that sums them."""

    def __init__(self, classes, wordnet: WordNet):
        self.classes = list(classes)
        bad = [c for c in self.classes if not is_wnid(c) or wordnet.synset(c) is None]
        if bad:
            raise MinwaError(f"--hierarchy needs classes named by WordNet 3.0 noun ids (n01440764); "
                             f"{len(bad)} of the {len(self.classes)} classes are not, e.g. '{bad[0]}'")
        above = {c: wordnet.ancestors(c) for c in self.classes}
        self.nodes = sorted(set().union(*above.values()))
        self.node_index = node_of = {w: i for i, w in enumerate(self.nodes)}
        self.internal = [c for c in self.classes if c in node_of]  # labels that are also some label's ancestor
        under: list[set[int]] = [set() for _ in self.nodes]
        for j, c in enumerate(self.classes):
            for w in above[c] | ({c} if c in node_of else set()):  # an internal label counts under its own node
                under[node_of[w]].add(j)
        self.under = [frozenset(s) for s in under]  # label indices beneath each node
        self.node_names = [display_name(w, wordnet.synset(w)) for w in self.nodes]
        self.label_names = [display_name(c, wordnet.synset(c)) + (" (the label itself)" if c in node_of else "")
                            for c in self.classes]
        self.nodes_of: list[list[int]] = [[] for _ in self.classes]  # nodes above each label
        for i, s in enumerate(self.under):
            for j in s:
                self.nodes_of[j].append(i)
        rows = [i for i, s in enumerate(self.under) for _ in s]
        cols = [j for s in self.under for j in sorted(s)]
        self.matrix = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.int64),
                                              torch.ones(len(rows)), (len(self.nodes), len(self.classes)),
                                              check_invariants=True).coalesce()
        self.size = torch.tensor([1] * len(self.classes) + [len(s) for s in self.under], dtype=torch.float64)
        memo: dict[str, int] = {}
        self.node_depth = [_depth(w, wordnet, memo) for w in self.nodes]
        # a label is more specific than any node holding the same labels
        self.depth = torch.tensor([_LABEL_DEPTH] * len(self.classes) + self.node_depth, dtype=torch.float64)

    def node_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """(n, nodes): each node's summed label probability, from (n, labels) softmax outputs."""
        return torch.sparse.mm(self.matrix, probs.float().T.contiguous()).T

    def answers(self, probs: torch.Tensor, threshold: float) -> list[Answer]:
        """Per image, the most specific label or node holding at least ``threshold`` of the probability:
        the fewest labels beneath it, then the larger probability, then the deeper synset (``pet`` before
        ``animal`` when both hold the same labels)."""
        probs = probs.float().cpu()
        mass = torch.cat([probs, self.node_probs(probs)], dim=1).double()
        ok = mass >= threshold - TOLERANCE
        ok[~ok.any(dim=1)] = True  # nothing reaches it (a threshold over the root's float sum): any will do
        size = torch.where(ok, self.size, torch.inf)
        ok &= size == size.min(dim=1, keepdim=True).values
        held = torch.where(ok, mass, -1.0)
        ok &= held == held.max(dim=1, keepdim=True).values
        best = torch.where(ok, self.depth, -1.0).argmax(dim=1)
        return [self._answer(k, float(mass[i, k])) for i, k in enumerate(best.tolist())]

    def _answer(self, k: int, p: float) -> Answer:
        n = len(self.classes)
        if k < n:
            return Answer(self.classes[k], self.label_names[k], p, 1, True)
        return Answer(self.nodes[k - n], self.node_names[k - n], p, len(self.under[k - n]), False)

    def beneath(self, answer: Answer, probs: torch.Tensor, most: int = 3) -> list[tuple[int, float]]:
        """The ``most`` most probable labels under an answer, as (label index, probability)."""
        if answer.is_label:
            return []
        idx = torch.tensor(sorted(self.under[self.node_index[answer.wnid]]))
        top = probs[idx].topk(min(most, len(idx)))
        return [(int(idx[j]), float(p)) for p, j in zip(top.values, top.indices)]

    def covers(self, answer: Answer, label: int) -> bool:
        """Whether an answer is right: it is the true label, or a node with the true label beneath it."""
        if answer.is_label:
            return answer.wnid == self.classes[label]
        return label in self.under[self.node_index[answer.wnid]]

    def lowest_common(self, a: int, b: int) -> int | None:
        """The node above both labels with the fewest labels beneath it (None if they share none)."""
        common = set(self.nodes_of[a]) & set(self.nodes_of[b])
        return min(common, key=lambda i: (len(self.under[i]), -self.node_depth[i], i)) if common else None


def _depth(wnid: str, wordnet: WordNet, memo: dict) -> int:
    """Hypernym links on the longest path up to a root (``entity`` is 0)."""
    if wnid not in memo:
        s = wordnet.synset(wnid)
        memo[wnid] = 1 + max((_depth(h, wordnet, memo) for h in s.hypernyms), default=-1) if s else 0
    return memo[wnid]

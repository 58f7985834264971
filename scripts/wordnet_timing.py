"""Times the WordNet reading docs/data.md quotes: ImageNet-1k's names and hierarchy from Debian's
wordnet-base, and a 21k-sized label set (21,841 noun synsets drawn at random: internal labels included).
Run: PYTHONPATH=. python scripts/wordnet_timing.py"""

import random
import time
from collections import Counter

import torch

from minwa.pretrained.imagenet import imagenet1k
from minwa.wordnet import Hierarchy, WordNet, display_names
from minwa.wordnet.database import DEFAULT_FOLDER

torch.set_num_threads(1)
ids, _ = imagenet1k()
t = time.perf_counter()
names, _ = display_names(ids)
print(f"ImageNet-1k names: {time.perf_counter() - t:.3f} s; words shared by two classes: "
      f"{[w for w, c in Counter(n.split(' ', 1)[1] for n in names).items() if c > 1]}")
t = time.perf_counter()
h = Hierarchy(ids, WordNet())
print(f"ImageNet-1k hierarchy: {time.perf_counter() - t:.3f} s, {len(h.nodes)} synsets above the labels")
with open(f"{DEFAULT_FOLDER}/data.noun", "rb") as f:
    every = ["n" + line[:8].decode() for line in f if not line.startswith(b"  ")]
random.seed(0)
labels = sorted(random.sample(every, 21841))
t = time.perf_counter()
h = Hierarchy(labels, WordNet())
print(f"21,841 random noun synsets: {time.perf_counter() - t:.2f} s, {len(h.nodes)} synsets above them, "
      f"{len(h.internal)} labels that are ancestors of others")
p = torch.softmax(torch.randn(256, 21841) * 3, 1)
t = time.perf_counter()
h.answers(p, 0.9)
print(f"answers for 256 images over 21,841 labels: {time.perf_counter() - t:.2f} s")

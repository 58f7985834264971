"""Readable class names: ``n02099601`` is shown as ``n02099601 golden retriever`` in every table, the
confusion matrix, ``predict`` and the service (the form of the MXNet note's tables: id, then words; the id
stays because WordNet's first words are not unique among ImageNet's classes: two "crane"s, two "maillot"s).

The words come from WordNet's own files; where those are missing, from the checkpoint's recorded lemmas
(``class_descriptions``, which imported ImageNet models carry), else the id alone, with one note saying how
to get the names. A class that is not a WordNet id ("T-shirt/top") is shown as it is.
"""

from __future__ import annotations

from minwa.wordnet.database import Synset, WordNet, WordNetMissing, is_wnid


def display_name(cls: str, synset: Synset | None = None, description: str = "") -> str:
    """The one way a class is shown: ``wnid words`` when the words are known, else the class itself."""
    if synset is not None:
        return f"{cls} {synset.name}"
    if description and is_wnid(cls):
        return f"{cls} {description.split(',')[0].strip()}"
    return cls


def display_names(classes, folder: str = "", descriptions=None) -> tuple[list[str], str]:
    """(a display name per class, a one-line note or "") — WordNet is opened only when some class is a wnid;
    the note says the names are missing and how to get them, when some wnid could not be named."""
    classes = list(classes)
    descriptions = list(descriptions or [])
    if not any(is_wnid(c) for c in classes):
        return classes, ""
    try:
        wordnet = WordNet(folder)
    except WordNetMissing as e:
        wordnet, missing = None, str(e)
    names = []
    for i, c in enumerate(classes):
        synset = wordnet.synset(c) if wordnet is not None else None
        names.append(display_name(c, synset, descriptions[i] if i < len(descriptions) else ""))
    if wordnet is not None:
        wordnet.close()
        return names, ""
    unnamed = sum(1 for c, n in zip(classes, names) if n == c and is_wnid(c))
    return names, (f"{unnamed} classes are shown as WordNet ids only: {missing[0].lower()}{missing[1:]}"
                   if unnamed else "")

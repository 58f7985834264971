"""WordNet 3.0 for ImageNet-style classes named by noun ids (``n01440764``): readable names and the
hypernym tree, read from WordNet's own files (Debian's ``wordnet-base``; docs/data.md "WordNet names and
the hierarchy"). Names are imported on first use: the hierarchy needs torch, the names do not.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "DEFAULT_FOLDER": "minwa.wordnet.database",
    "Synset": "minwa.wordnet.database",
    "WordNet": "minwa.wordnet.database",
    "WordNetMissing": "minwa.wordnet.database",
    "is_wnid": "minwa.wordnet.database",
    "display_name": "minwa.wordnet.names",
    "display_names": "minwa.wordnet.names",
    "Answer": "minwa.wordnet.hierarchy",
    "Hierarchy": "minwa.wordnet.hierarchy",
})

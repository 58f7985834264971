#!/usr/bin/env bash
# WordNet 3.0's own data files for tests/test_wordnet.py (readable names and the hypernym tree of ImageNet's
# WordNet-id classes): Debian's wordnet-base, /usr/share/wordnet/data.noun. The tests on a small WordNet of
# their own run anyway.
exec bash "$(dirname "$0")/ensure-debian.sh" "WordNet's data files, for class names and the hierarchy" \
    "[ -s /usr/share/wordnet/data.noun ]" "the tests on the real WordNet" wordnet-base

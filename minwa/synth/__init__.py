"""Data generators for benchmarks and tests, not part of training.

``make_small_objects`` (``minwa make-dataset small-objects OUT``): real Fashion-MNIST items pasted small
onto real photographs, as an ImageFolder of JPEGs; see docs/data.md.
"""

"""minwa: the Deep Image system (Wu et al., 2015) rebuilt on PyTorch.

Stages, one package each: ``data`` (sources, shards, loader), ``augment`` (the fused Table 1 engine),
``models`` (single-device ``nn.Module`` registry), ``parallel`` (applied from outside), ``train`` and
``evaluate``. Everything the CLI does is a plain call here first.
"""

__version__ = "0.1.0"

from minwa.errors import MinwaError  # noqa: E402

__all__ = ["MinwaError", "__version__"]

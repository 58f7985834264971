"""The augmentation engine: uint8 batches in, normalised float batches out, on the input's device.

``Augmenter(cfg, out_size, mean, std)(images, indices, epoch, seed)`` is the train path: per-sample
parameters from the counter-based generator, every geometric transform in one ``grid_sample`` (or the
exact integer gather when the batch has only crops, translations and flips), every photometric one in one
elementwise pass, then ``(x/255 - mean)/std``. ``aug.eval(images)`` is the centre crop + normalisation.
"""

from __future__ import annotations

from typing import Sequence

import torch

from minwa.augment import cpu_kernel, geometry, photometric
from minwa.augment.config import AugmentConfig
from minwa.augment.params import AugmentParams, sample_params, streams_for
from minwa.augment.pca import imagenet_pca, load_pca
from minwa.augment.presets import apply_preset
from minwa.errors import MinwaError
from minwa.evaluate.preprocess import crop_normalise


class Augmenter:
    """Batched Deep Image / AlexNet augmentation (a plain object: it holds no weights).

    ``pca`` (eigvals, eigvecs on the 0..1 scale) overrides ``cfg.pca_file``; without either, 3-channel
    data use AlexNet's ImageNet components and 1-channel data get no PCA lighting (a 1x1 PCA from
    ``compute_pca_lighting`` of the grey data set can be passed instead). On 1-channel data the colour
    cast is channel R's draw applied to the single channel: a random brightness shift.

    ``reuse_output=True``: every call without ``out=`` returns the same tensor (one per shape and device),
    overwritten by the next call. Safe only for a consumer that is done with a batch before asking for
    the next (a training step that copies it to a device or runs the model on it first); it saves
    allocating the output each batch. Off by default: each call then returns a new tensor.
    Input may be NCHW or channels-last memory (``images.permute(0, 3, 1, 2)`` of N x H x W x C
    data, as image decoders produce it); the CPU kernel reads channels-last RGB fastest.
    """

    def __init__(self, cfg: AugmentConfig, out_size: int, mean: float | Sequence[float] = 0.0,
                 std: float | Sequence[float] = 1.0, pca: tuple[torch.Tensor, torch.Tensor] | None = None,
                 backend: str = "auto", reuse_output: bool = False):
        self.cfg = apply_preset(cfg)
        self.reuse_output = bool(reuse_output)
        self._outputs: dict = {}
        if backend not in ("auto", "torch", "numba"):
            raise MinwaError(f"augment backend must be auto, torch or numba, got '{backend}'")
        if backend == "numba" and not cpu_kernel.available():
            raise MinwaError("the numba augment backend needs numba (pip install numba)")
        self.backend = backend
        self.out = int(out_size)
        self.mean, self.std = mean, std
        c = self.cfg
        if self.out < 1:  # the settings themselves were checked by apply_preset (augment.config.check)
            raise MinwaError(f"the augmentation output size must be positive, got {self.out}")
        if c.pca_lighting > 0 and pca is None:
            pca = load_pca(c.pca_file) if c.pca_file else None
        self.pca = pca
        self._consts: dict = {}
        self._streams = streams_for(c)

    # -- helpers -------------------------------------------------------------------------------------
    def _check(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise MinwaError(f"augment expects uint8 N x C x H x W images, got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] not in (1, 3):
            raise MinwaError(f"augment handles 1- or 3-channel images, got {images.shape[1]} channels")
        if min(images.shape[-2:]) < self.out:
            raise MinwaError(f"images of {tuple(images.shape[-2:])} are smaller than the {self.out}-pixel output")

    def _normaliser(self, channels: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (channels, str(device))
        if key not in self._consts:
            self._consts[key] = photometric.normalise_factors(self.mean, self.std, channels, device)
        return self._consts[key]

    def _pca_for(self, channels: int, device="cpu"):
        """(eigvals, eigvecs) on ``device`` (kept there: a copy per batch would stall a GPU), or None."""
        if self.cfg.pca_lighting <= 0:
            return None
        pca = self.pca if self.pca is not None else (imagenet_pca() if channels == 3 else None)
        if pca is None:
            return None
        if pca[0].numel() != channels:
            raise MinwaError(f"PCA lighting has {pca[0].numel()} components for {channels}-channel images")
        key = ("pca", channels, str(device))
        if key not in self._consts:
            self._consts[key] = tuple(t.to(device, torch.float32) for t in pca)
        return self._consts[key]

    # -- the two paths -------------------------------------------------------------------------------
    def params(self, images: torch.Tensor, indices: torch.Tensor, epoch: int, seed: int) -> AugmentParams:
        """The parameters ``__call__`` uses for this batch (for previews and tests)."""
        indices = torch.as_tensor(indices, dtype=torch.int64).to(images.device)
        return sample_params(self.cfg, indices, int(epoch), int(seed), tuple(images.shape[-2:]), self.out,
                             self._pca_for(images.shape[1], images.device), self._streams)

    def __call__(self, images: torch.Tensor, indices, epoch: int = 0, seed: int = 0,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """The train path. ``out`` (float32 N x C x out x out, same device) receives the result when given:
        a trainer that double-buffers saves the page faults of a fresh large tensor per batch on a CPU."""
        self._check(images)
        if len(indices) != images.shape[0]:
            raise MinwaError(f"augment got {len(indices)} indices for {images.shape[0]} images")
        if out is None and self.reuse_output:
            key = (tuple(images.shape[:2]), str(images.device))
            if key not in self._outputs:
                if len(self._outputs) >= 2:  # e.g. the full batches and an epoch's short last one
                    self._outputs.pop(next(iter(self._outputs)))
                self._outputs[key] = self._fresh(images.shape[0], images.shape[1], images.device)
            out = self._outputs[key]
        return self.apply(images, self.params(images, indices, epoch, seed), out=out)

    def _fresh(self, n: int, ch: int, device) -> torch.Tensor:
        shape = (n, ch, self.out, self.out)
        if torch.device(device).type == "cpu" and cpu_kernel.available():
            return cpu_kernel.fresh_output(shape)
        return torch.empty(shape, dtype=torch.float32, device=device)

    def uses_kernel(self, images: torch.Tensor) -> bool:
        """Whether a batch like ``images`` goes through the fused CPU kernel (numba) or PyTorch ops.

        The kernel pays off whenever there is more to do than an integer gather (a warp or any
        photometric change); crop/translate/flip-only configs keep the PyTorch gather, which is cheaper.
        """
        c = self.cfg
        if self.backend == "torch" or images.device.type != "cpu" or not cpu_kernel.available():
            return False
        if self.backend == "numba":
            return True
        return bool(c.rotation or c.lens or c.color_cast or c.vignette or c.pca_lighting > 0)

    def apply(self, images: torch.Tensor, p: AugmentParams, out: torch.Tensor | None = None) -> torch.Tensor:
        """Augment ``images`` with explicit parameters ``p`` (on the same device)."""
        c = self.cfg
        n, ch = images.shape[:2]
        if out is not None and (out.shape != (n, ch, self.out, self.out) or out.dtype != torch.float32
                                or out.device != images.device or not out.is_contiguous()):
            raise MinwaError(f"augment out= must be a contiguous float32 {(n, ch, self.out, self.out)} tensor "
                             f"on {images.device}")
        scale, shift = self._normaliser(ch, images.device)
        offset = c.color_cast or (c.pca_lighting > 0 and self._pca_for(ch, images.device) is not None)
        if self.uses_kernel(images):
            x = cpu_kernel.run(images, p, self.out, c.fill, scale, shift, offset, out=out)
            return photometric.erase_(x, p) if c.erase > 0 else x
        x = self._apply_torch(images, p, scale, shift, offset)
        return out.copy_(x) if out is not None else x

    def _apply_torch(self, images, p, scale, shift, offset) -> torch.Tensor:
        c = self.cfg
        static_integer = c.rotation == 0 and not c.lens
        # asking whether this batch drew only integer geometry is a host sync on a GPU: warp there (the
        # warp of integer parameters is the same crop, tested)
        if static_integer or (images.device.type == "cpu" and p.integer_geometry):
            fill = "border" if c.fill == "surround" else c.fill
            x = geometry.gather_windows(images, p, self.out, fill, flip=True).to(torch.float32)
        else:
            x = geometry.warp(images, p, self.out, c.fill)
        return photometric.apply(x, p, scale, shift, offset=offset, vignette=c.vignette, erase=c.erase > 0)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Centre crop to ``out_size`` and normalise (no randomness): the one test-time path's last step,
        :func:`minwa.evaluate.preprocess.crop_normalise`."""
        self._check(images)
        return crop_normalise(images, self.out, self.mean, self.std)

"""The whole train-path augmentation as one fused CPU loop (numba), when numba is installed.

Why a hand-written kernel: on a 2-core CPU the PyTorch path (gather + ``grid_sample`` + elementwise
passes) runs the Deep Image preset at about a sixth of an OpenCV-based Albumentations pipeline
(``minwa bench augment``: ``minwa_torch_img_s``); ``grid_sample`` alone costs about as much per image
as the whole peer. This loop computes, for each output pixel, the same mapping as ``geometry.warp``
(flip + rotation + radial distortion / stretch; fill at the image's edge for reflect / surround, at the
crop's edge for border / zeros), reads the four source pixels,
interpolates, adds the colour cast / PCA offset, applies the vignette, clamps and normalises, writing
each float once. Two variants: ``_kernel_packed`` / ``_kernel_planar`` for samples whose reads lie inside the image (plain
addressing, vectorised: per output row, a pass for coordinates, then a pass of gathered loads), and
``_kernel_mapped`` for the rest (border windows leaving the image, zeros fill), which reads
through per-sample row / column fold maps. Samples with no rotation, distortion or stretch take an exact
one-load copy path. The result equals the PyTorch path to float rounding (tested for every fill).

Input is read in place through its byte strides: planar NCHW, or channels-last memory (N x H x W x C
bytes seen through ``permute``, as decoders produce them), which is faster for RGB because a pixel and
its right neighbour share one 8-byte word. Where the time went: a warped sample's scattered reads defeat
the hardware prefetcher, so on a batch larger than the caches each new cache line was a trip to DRAM
(0.35 ms per 512 -> 224 image against 0.07 ms on a cache-resident batch); the direct kernels therefore
first stream a warped sample's window into cache with sequential reads. Images go one at a time to
whichever thread is free. Large fresh outputs recycle the memory of earlier, dropped ones
(``fresh_output``). On GPUs, and on CPUs without numba, the PyTorch path runs instead.
"""

from __future__ import annotations

import mmap
import sys
import threading

import numpy as np
import torch

try:  # optional accelerator: the PyTorch path is the reference and the fallback
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

from minwa.augment import geometry
from minwa.augment.params import AugmentParams

SMALL_BATCH = 1 << 20  # output values below which the kernel runs single-threaded


def available() -> bool:
    """numba is installed and the CPU is little-endian (the kernel unpacks bytes from 4-byte words)."""
    return numba is not None and sys.byteorder == "little"


def _axis_maps(start: torch.Tensor, length: int, size: int, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample maps from window index ``-1 .. length+1`` to an image index and a 0/1 weight.

    ``start`` (N,) is the window's first image index; indices off the image are folded per ``fill`` by
    ``geometry.fold``, exactly as ``geometry.gather_windows`` folds them.
    """
    pos = start[:, None] + torch.arange(-1, length + 2)[None, :]
    idx, valid = geometry.fold(pos, size, fill)
    weight = valid.to(torch.float32) if valid is not None else torch.ones(pos.shape, dtype=torch.float32)
    if fill == "zeros":  # zeros at the crop's edge too: nothing outside the window is read
        weight[:, 0] = 0.0
        weight[:, length + 1 :] = 0.0
    return idx.to(torch.int32).numpy(), weight.numpy()


if numba is not None:

    @njit(inline="always", fastmath=True, cache=True)
    def _vignette(rho, r0, inv, st):
        """Vignette gain at radius ``rho``: 1 inside ``r0``, then a smoothstep down by ``st``."""
        t = min(max((rho - r0) * inv, np.float32(0.0)), np.float32(1.0))
        return np.float32(1.0) - st * t * t * (np.float32(3.0) - np.float32(2.0) * t)

    @njit(inline="always", fastmath=True, cache=True)
    def _source_xy(ux, uy, c_a, s_a, kk, fx, fy, ctr):
        """Source point (x, y) of output point (ux, uy) in window pixels: rotation, radial distortion,
        stretch."""
        f = np.float32(1.0) + kk * (ux * ux + uy * uy)
        return (c_a * ux - s_a * uy) * f * fx + ctr, (s_a * ux + c_a * uy) * f * fy + ctr

    @njit(inline="always", fastmath=True, cache=True)
    def _fold_axis(p, size_f, span, inv_span, reflect, lo, hi):
        """Image coordinate ``p`` on an axis of ``size_f`` pixels (reflect period ``span`` = 2 size),
        mirrored about the image's edges (reflect, any number of times, as ``geometry.fold``), then
        clamped to [lo, hi]."""
        if reflect:
            t = (p + np.float32(0.5)) * inv_span
            t = (t - np.floor(t)) * span
            p = (span - t if t > size_f else t) - np.float32(0.5)
        return min(max(p, lo), hi)

    @njit(inline="always", fastmath=True, cache=True)
    def _clamp_range(oxf, oyf, s_f, w_f, h_f, crop_edge):
        """(lo_x, hi_x, lo_y, hi_y) in image pixels: the crop (border fill) or the whole image."""
        one = np.float32(1.0)
        zero = np.float32(0.0)
        return (oxf if crop_edge else zero, oxf + s_f - one if crop_edge else w_f - one,
                oyf if crop_edge else zero, oyf + s_f - one if crop_edge else h_f - one)

    @njit(inline="always", fastmath=True, cache=True)
    def _frame(S):
        """Constants every kernel uses for an S x S output: 1, 0, 1/2, 255, S and the centre (S - 1) / 2."""
        half = np.float32(0.5)
        s_f = np.float32(S)
        return np.float32(1.0), np.float32(0.0), half, np.float32(255.0), s_f, s_f * half - half

    @njit(inline="always", fastmath=True, cache=True)
    def _bilerp_word(w0, w2, shift, wx, wy):
        """Bilinear value of the channel at bit ``shift`` from two RGBRGBRG words: ``w0`` holds a pixel
        and its right neighbour, ``w2`` the two below them."""
        byte = np.uint64(255)
        nxt = shift + np.uint64(24)  # the same channel of the right neighbour
        p00 = np.float32(np.int32((w0 >> shift) & byte))
        p01 = np.float32(np.int32((w0 >> nxt) & byte))
        p10 = np.float32(np.int32((w2 >> shift) & byte))
        p11 = np.float32(np.int32((w2 >> nxt) & byte))
        up = p00 + (p01 - p00) * wx
        return up + (p10 + (p11 - p10) * wx - up) * wy

    @njit(inline="always", fastmath=True, cache=True)
    def _sample_params(n, ca, sa, k, isx, isy, flip, vr, vs, s_f):
        """Sample ``n``'s warp and vignette constants: (cos, sin, distortion, x / y half-spans in pixels,
        flip sign, vignette radius, strength, 1 / falloff width)."""
        one = np.float32(1.0)
        half = np.float32(0.5)
        r0 = vr[n]
        return (ca[n], sa[n], k[n], isx[n] * s_f * half, isy[n] * s_f * half, -one if flip[n] else one,
                r0, vs[n], one / max(one - r0, np.float32(1e-3)))

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, cache=True)
    def _kernel_mapped(flat, C, sN, sC, sY, sX, todo, rmap, rw, cmap, cw, simple, flip, ca, sa, k, isx, isy, off, vs, vr,
                       rho, scale, shift, zeros, out):  # pragma: no cover - compiled
        """Any sample: image rows / columns through the fold maps (windows leaving the image, zeros fill)."""
        U = np.uintp
        N = out.shape[0]
        S = out.shape[2]
        SS = S * S
        one, zero, half, full, s_f, ctr = _frame(S)
        lo_c = np.float32(-1) if zeros else zero  # clamp range of coordinates
        hi_c = s_f if zeros else s_f - one
        base_off = 1  # window index -1 is map entry 0
        inv_s = np.float32(2.0) / s_f
        o = out.reshape(-1)
        for r in prange(N * S):
            n = r // S
            if not todo[n]:
                continue
            i = r - n * S
            uy = np.float32(2 * i + 1) * (inv_s * half) - one
            b0 = U(n) * U(sN)
            ob = U(n) * U(C) * U(SS) + U(i * S)
            c_a, s_a, kk, fx, fy, fs, r0, st, inv = _sample_params(n, ca, sa, k, isx, isy, flip, vr, vs, s_f)
            rm = rmap[n]
            rwn = rw[n]
            cm = cmap[n]
            cwn = cw[n]
            offn = off[n]
            rho_i = rho[i]
            flipped = flip[n]
            if simple[n]:  # integer crop (+ flip): one source pixel per output pixel
                yy = U(i + base_off)
                ry = b0 + U(rm[yy]) * U(sY)
                wy = rwn[yy]
                for j in range(S):
                    xx = U((S - 1 - j if flipped else j) + base_off)
                    m = _vignette(rho_i[U(j)], r0, inv, st)
                    w = wy * cwn[xx]
                    src = ry + U(cm[xx]) * U(sX)
                    for c in range(C):
                        cu = U(c)
                        v = (np.float32(flat[src + cu * U(sC)]) * w + offn[cu]) * m
                        o[ob + cu * U(SS) + U(j)] = min(max(v, zero), full) * scale[cu] + shift[cu]
                continue
            for j in range(S):
                ux = (np.float32(2 * j + 1) * (inv_s * half) - one) * fs
                px, py = _source_xy(ux, uy, c_a, s_a, kk, fx, fy, ctr)
                px = min(max(px, lo_c), hi_c)
                py = min(max(py, lo_c), hi_c)
                x0f = np.floor(px)
                y0f = np.floor(py)
                wx = px - x0f
                wy = py - y0f
                xi = U(np.int64(x0f) + base_off)
                yi = U(np.int64(y0f) + base_off)
                w00 = (one - wx) * (one - wy)
                w01 = wx * (one - wy)
                w10 = (one - wx) * wy
                w11 = wx * wy
                if zeros:  # zeros fill: pixels off the window or the image weigh nothing
                    w00 *= rwn[yi] * cwn[xi]
                    w01 *= rwn[yi] * cwn[xi + U(1)]
                    w10 *= rwn[yi + U(1)] * cwn[xi]
                    w11 *= rwn[yi + U(1)] * cwn[xi + U(1)]
                ry0 = b0 + U(rm[yi]) * U(sY)
                ry1 = b0 + U(rm[yi + U(1)]) * U(sY)
                cx0 = U(cm[xi]) * U(sX)
                cx1 = U(cm[xi + U(1)]) * U(sX)
                m = _vignette(rho_i[U(j)], r0, inv, st)
                a00 = ry0 + cx0
                a01 = ry0 + cx1
                a10 = ry1 + cx0
                a11 = ry1 + cx1
                for c in range(C):
                    cu = U(c)
                    cs = cu * U(sC)
                    v = (np.float32(flat[a00 + cs]) * w00 + np.float32(flat[a01 + cs]) * w01
                         + np.float32(flat[a10 + cs]) * w10 + np.float32(flat[a11 + cs]) * w11)
                    v = (v + offn[cu]) * m
                    o[ob + cu * U(SS) + U(j)] = min(max(v, zero), full) * scale[cu] + shift[cu]

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, cache=True)
    def _kernel_packed(flat, src, sN, sY, H, W, todo, oy, ox, simple, flip, ca, sa, k, isx, isy, off,
                       vs, vr, rho, uxs, scale, shift, reflect, crop_edge, sink, out):  # pragma: no cover
        """Channels-last RGB samples whose window lies inside the image, and warped samples of an image fill
        (reflect, surround) wherever their window lies.

        Warped points are folded in image coordinates (``_fold_axis``): mirrored about the image's edges
        (``reflect``), clamped to the image (surround) or to the crop (``crop_edge``: border fill).

        ``src`` is the uint8 batch ``flat`` seen as unaligned little-endian uint64 words at every byte
        offset: one word holds R, G, B of a pixel and of its right neighbour, so a bilinear sample is
        two loads instead of twelve. A warped sample's window is first read row by row (one byte per
        cache line) so that the scattered loads below hit the cache. Two passes per output row, both
        vectorised by the compiler (the flags are uint8, so numba marks the arrays non-aliasing): the
        coordinates, weights and vignette of the whole row, then the loads (hardware gathers) and the
        interpolation. Crop-only samples read their rows as contiguous RGB runs. ``sink`` (N,) uint8
        receives the prefetch reads so that the compiler keeps them.
        """
        N = out.shape[0]
        S = out.shape[2]
        sX = 3
        one, zero, _, full, s_f, ctr = _frame(S)
        lim = np.int64(src.shape[0] - 1)  # the last byte offset an 8-byte word may start at
        w_f, span_x, top_x = np.float32(W), np.float32(2 * W), np.float32(W - 2)
        h_f, span_y, top_y = np.float32(H), np.float32(2 * H), np.float32(H - 2)
        inv_x, inv_y = one / span_x, one / span_y
        for n in prange(N):
            if not todo[n]:
                continue
            wxs = np.empty(S, np.float32)
            wys = np.empty(S, np.float32)
            ms = np.empty(S, np.float32)
            addr = np.empty(S, np.int64)
            c_a, s_a, kk, fx, fy, fs, r0, st, inv = _sample_params(n, ca, sa, k, isx, isy, flip, vr, vs, s_f)
            img = np.int64(n) * sN
            base = img + np.int64(oy[n]) * sY + np.int64(ox[n]) * sX
            oxf = np.float32(ox[n])
            oyf = np.float32(oy[n])
            lo_x, hi_x, lo_y, hi_y = _clamp_range(oxf, oyf, s_f, w_f, h_f, crop_edge)
            is_simple = simple[n]
            if not is_simple and oy[n] >= 0 and oy[n] + S <= H and ox[n] >= 0 and ox[n] + S <= W:
                # stream the window (when it lies in the image) into cache
                width = np.int64(min(ox[n] + S, W - 1) - ox[n] + 1) * sX  # the window + 1 pixel, in the image
                acc = np.uint8(0)
                for yy in range(min(oy[n] + S, H - 1) - oy[n] + 1):
                    rb = base + np.int64(yy) * sY
                    for cb in range(0, width, 64):
                        acc |= flat[rb + cb]
                    acc |= flat[rb + width - 1]
                sink[n] = acc
            for i in range(S):
                uy = uxs[i]
                if is_simple:
                    for j in range(S):
                        addr[j] = base + np.int64(i) * sY + np.int64(S - 1 - j if fs < zero else j) * sX
                        ms[j] = _vignette(rho[i, j], r0, inv, st)
                else:
                    for j in range(S):  # pass 1
                        px, py = _source_xy(uxs[j] * fs, uy, c_a, s_a, kk, fx, fy, ctr)
                        px = _fold_axis(px + oxf, w_f, span_x, inv_x, reflect, lo_x, hi_x)
                        py = _fold_axis(py + oyf, h_f, span_y, inv_y, reflect, lo_y, hi_y)
                        x0 = min(np.floor(px), top_x)  # both pixels read lie inside the image
                        y0 = min(np.floor(py), top_y)
                        wxs[j] = px - x0
                        wys[j] = py - y0
                        addr[j] = img + np.int64(y0) * sY + np.int64(x0) * sX
                        ms[j] = _vignette(rho[i, j], r0, inv, st)
                o0 = off[n, 0]
                o1 = off[n, 1]
                o2 = off[n, 2]
                sc0 = scale[0]
                sc1 = scale[1]
                sc2 = scale[2]
                sh0 = shift[0]
                sh1 = shift[1]
                sh2 = shift[2]
                if is_simple:  # a row of the crop is a contiguous run of RGB bytes: no gathers
                    row = base + np.int64(i) * sY
                    step = -sX if fs < zero else sX
                    row += np.int64(S - 1) * sX if fs < zero else np.int64(0)
                    for j in range(S):
                        a = row + np.int64(j) * step
                        m = ms[j]
                        v0 = (np.float32(flat[a]) + o0) * m
                        v1 = (np.float32(flat[a + 1]) + o1) * m
                        v2 = (np.float32(flat[a + 2]) + o2) * m
                        out[n, 0, i, j] = min(max(v0, zero), full) * sc0 + sh0
                        out[n, 1, i, j] = min(max(v1, zero), full) * sc1 + sh1
                        out[n, 2, i, j] = min(max(v2, zero), full) * sc2 + sh2
                else:
                    for j in range(S):
                        a = addr[j]
                        b = a + sY
                        # R G B R G B R G: both pixels of a row in one 8-byte word. Only a lower-row word
                        # in the last image's last row can run past the buffer's end (by 2 bytes of the
                        # next pixel, which is never used): read it 2 bytes earlier and shift it back
                        bl = min(b, lim)
                        w0 = src[a]
                        w2 = src[bl] >> np.uint64((b - bl) * 8)
                        wx = wxs[j]
                        wy = wys[j]
                        m = ms[j]
                        v0 = (_bilerp_word(w0, w2, np.uint64(0), wx, wy) + o0) * m
                        v1 = (_bilerp_word(w0, w2, np.uint64(8), wx, wy) + o1) * m
                        v2 = (_bilerp_word(w0, w2, np.uint64(16), wx, wy) + o2) * m
                        out[n, 0, i, j] = min(max(v0, zero), full) * sc0 + sh0
                        out[n, 1, i, j] = min(max(v1, zero), full) * sc1 + sh1
                        out[n, 2, i, j] = min(max(v2, zero), full) * sc2 + sh2

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, cache=True)
    def _kernel_planar(flat, C, H, W, todo, oy, ox, simple, flip, ca, sa, k, isx, isy, off, vs, vr, rho,
                       scale, shift, reflect, crop_edge, sink, out):  # pragma: no cover - compiled
        """Planar (NCHW) samples, chosen and folded as in ``_kernel_packed``.

        Scalar byte loads: measured faster here than hardware gathers of words on planes (six per
        pixel). Its flag arrays are bool on purpose: they keep numba from declaring the arrays
        non-aliasing, which would let the compiler turn these loads into gathers.

        Two passes per output row: the coordinates, weights and vignette of the whole row (a loop the
        compiler vectorises), then the uint8 loads and the interpolation. A warped sample's window is
        first streamed into cache, as in ``_kernel_packed`` (``sink`` keeps those reads).
        """
        U = np.uintp
        N = out.shape[0]
        S = out.shape[2]
        SS = S * S
        one, zero, _, full, s_f, ctr = _frame(S)
        two = np.float32(2.0)
        HW = H * W
        o = out.reshape(-1)
        w_f, span_x, top_x = np.float32(W), np.float32(2 * W), np.float32(W - 2)
        h_f, span_y, top_y = np.float32(H), np.float32(2 * H), np.float32(H - 2)
        inv_x, inv_y = one / span_x, one / span_y
        uxs = (np.arange(S).astype(np.float32) * two + one) / s_f - one
        for n in prange(N):
            if not todo[n]:
                continue
            wxs = np.empty(S, np.float32)
            wys = np.empty(S, np.float32)
            ms = np.empty(S, np.float32)
            addr = np.empty(S, np.int64)
            c_a, s_a, kk, fx, fy, fs, r0, st, inv = _sample_params(n, ca, sa, k, isx, isy, flip, vr, vs, s_f)
            img = np.int64(n) * C * HW
            base = img + np.int64(oy[n]) * W + np.int64(ox[n])
            oxf = np.float32(ox[n])
            oyf = np.float32(oy[n])
            lo_x, hi_x, lo_y, hi_y = _clamp_range(oxf, oyf, s_f, w_f, h_f, crop_edge)
            offn = off[n]
            is_simple = simple[n]
            if not is_simple and oy[n] >= 0 and oy[n] + S <= H and ox[n] >= 0 and ox[n] + S <= W:
                # stream the window (when it lies in the image) into cache: scattered loads defeat the
                # hardware prefetcher
                width = np.int64(min(ox[n] + S, W - 1) - ox[n] + 1)  # the window + 1 pixel, in the image
                rows = min(oy[n] + S, H - 1) - oy[n] + 1
                acc = np.uint8(0)
                for yy in range(C * rows):
                    cc = yy // rows
                    rb = base + np.int64(cc) * HW + np.int64(yy - cc * rows) * W
                    for cb in range(0, width, 64):
                        acc |= flat[rb + cb]
                    acc |= flat[rb + width - 1]
                sink[n] = acc
            for i in range(S):
                uy = uxs[i]
                rho_i = rho[i]
                if is_simple:
                    for j in range(S):
                        addr[j] = np.int64(i) * W + (S - 1 - j if fs < zero else j)
                        ms[j] = _vignette(rho_i[j], r0, inv, st)
                else:
                    for j in range(S):  # pass 1: vectorised
                        px, py = _source_xy(uxs[j] * fs, uy, c_a, s_a, kk, fx, fy, ctr)
                        px = _fold_axis(px + oxf, w_f, span_x, inv_x, reflect, lo_x, hi_x)
                        py = _fold_axis(py + oyf, h_f, span_y, inv_y, reflect, lo_y, hi_y)
                        x0 = min(np.floor(px), top_x)  # both pixels read lie inside the image
                        y0 = min(np.floor(py), top_y)
                        wxs[j] = px - x0
                        wys[j] = py - y0
                        addr[j] = np.int64(y0) * W + np.int64(x0)  # from the image's first pixel
                        ms[j] = _vignette(rho_i[j], r0, inv, st)
                ob = U(n) * U(C) * U(SS) + U(i * S)
                for c in range(C):  # pass 2: loads and interpolation
                    cb = (base if is_simple else img) + np.int64(c) * HW
                    oc = offn[c]
                    sc = scale[c]
                    sh = shift[c]
                    oo = ob + U(c) * U(SS)
                    if is_simple:
                        for j in range(S):
                            v = (np.float32(flat[U(cb + addr[j])]) + oc) * ms[j]
                            o[oo + U(j)] = min(max(v, zero), full) * sc + sh
                    else:
                        for j in range(S):
                            a = U(cb + addr[j])
                            wx = wxs[j]
                            p00 = np.float32(flat[a])
                            p01 = np.float32(flat[a + U(1)])
                            p10 = np.float32(flat[a + U(W)])
                            p11 = np.float32(flat[a + U(W + 1)])
                            upper = p00 + (p01 - p00) * wx
                            lower = p10 + (p11 - p10) * wx
                            v = (upper + (lower - upper) * wys[j] + oc) * ms[j]
                            o[oo + U(j)] = min(max(v, zero), full) * sc + sh

def _words(flat: np.ndarray) -> np.ndarray:
    """``flat`` (uint8) as a little-endian uint64 word starting at every byte offset: a view, no copy."""
    return np.ndarray(shape=(flat.size - 7,), dtype=np.uint64, buffer=flat, strides=(1,))


def _layout(images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, tuple[int, int, int, int], bool]:
    """The batch as flat bytes with its (N, C, Y, X) byte strides; ``packed`` when RGB is channels-last.

    NCHW and channels-last memory are both read in place (a loader that decodes to H x W x C and hands
    ``permute(0, 3, 1, 2)`` costs nothing); any other layout is made contiguous first.
    """
    n, c, h, w = images.shape
    if (c == 3 and images.numel() >= 4 and not images.is_contiguous()
            and images.is_contiguous(memory_format=torch.channels_last)):
        flat = images.permute(0, 2, 3, 1).reshape(-1)
        return images, flat.numpy(), (h * w * c, 1, w * c, c), True
    images = images.contiguous()
    return images, images.reshape(-1).numpy(), (c * h * w, h * w, w, 1), False


HUGE_PAGE = 2 << 20
FRESH_HUGE = 8 << 20  # outputs at least this large (bytes) come from huge pages and are recycled
KEEP_OUTPUTS = 4  # large outputs remembered for recycling (at most this many idle ones stay mapped)
_HANDED_OUT: list[np.ndarray] = []  # the arrays behind large outputs handed out, oldest first
_HANDED_LOCK = threading.Lock()


def fresh_output(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 CPU tensor that no live tensor shares memory with.

    Why: a 128 x 3 x 224 x 224 batch is 77 MB; glibc maps every allocation that large fresh and the
    kernel zero-fills it 4 KiB page by page on first touch, which cost more than the whole augmentation
    (0.25-0.7 ms per image of CPU time here, against 0.13 ms for the kernel). So large outputs are
    recycled, as a caching allocator would: the memory of an earlier output that nothing references any
    more (no tensor, view or array of it is alive) is handed out again, its pages already mapped. New
    ones are asked for on transparent huge pages (2 MiB pages fault 512 times less often). Up to
    ``KEEP_OUTPUTS`` idle outputs stay mapped for reuse.
    """
    nbytes = 4 * int(np.prod(shape))
    if nbytes < FRESH_HUGE:
        return torch.empty(shape, dtype=torch.float32)
    shape = tuple(int(d) for d in shape)
    with _HANDED_LOCK:
        for i in range(len(_HANDED_OUT)):
            # idle: referenced only by the list and getrefcount's argument (no tensor, view or array)
            if _HANDED_OUT[i].shape == shape and sys.getrefcount(_HANDED_OUT[i]) == 2:
                _HANDED_OUT.append(_HANDED_OUT.pop(i))
                return torch.from_numpy(_HANDED_OUT[-1])
        arr = _new_output(shape, nbytes)
        _HANDED_OUT.append(arr)
        if len(_HANDED_OUT) > KEEP_OUTPUTS:
            _HANDED_OUT.pop(0)  # forgotten: freed with its last tensor, like any other
        return torch.from_numpy(arr)


def _new_output(shape: tuple[int, ...], nbytes: int) -> np.ndarray:
    """A float32 array on transparent huge pages where the OS offers them (Linux), else an ordinary one."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape, np.float32)
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        whole = np.frombuffer(region, np.uint8)
        start = -whole.ctypes.data % HUGE_PAGE  # huge pages need 2 MiB-aligned addresses
        region.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # no huge-page support here: an ordinary array
        return np.empty(shape, np.float32)
    return whole[start : start + nbytes].view(np.float32).reshape(shape)


def run(images: torch.Tensor, p: AugmentParams, out_size: int, fill: str,
        scale: torch.Tensor, shift: torch.Tensor, offset: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """float32 (N, C, out, out), normalised; ``images`` uint8 on the CPU (NCHW or channels-last memory).
    Erasing is left to the caller."""
    n, c, h, w = images.shape
    s = out_size
    edge = "border" if fill == "surround" else fill
    oy, ox = p.oy.cpu(), p.ox.cpu()
    simple = ((p.angle == 0) & (p.radial == 0) & (p.stretch_x == 1) & (p.stretch_y == 1)).cpu().numpy()
    # plain addressing where the window lies inside the image, or wherever a warped point folds into the
    # image (reflect, surround); crop-only samples read their window row by row
    inside = (oy >= 0) & (oy + s <= h) & (ox >= 0) & (ox + s <= w)
    folded = torch.from_numpy(~simple) & torch.tensor(fill in geometry.IMAGE_FILLS)
    direct = ((inside | folded) & torch.tensor(fill != "zeros" and min(h, w) > 1)).numpy()
    folds = (fill == "reflect", fill == "border")
    rho, uxs = _radius(s)
    f32 = lambda t: t.detach().to("cpu", torch.float32).contiguous().numpy()  # noqa: E731
    off = f32(p.offset[:, :c]) if offset else np.zeros((n, c), np.float32)
    if out is None:
        out = fresh_output((n, c, s, s))
    # a small batch (a 256-image Fashion-MNIST batch is 0.2M outputs) is done before a second thread
    # would even be scheduled on a busy machine: run it on the calling thread alone
    threads = torch.get_num_threads() if n * c * s * s >= SMALL_BATCH else 1
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    images, flat, (sn, sc, sy, sx), packed = _layout(images)
    flip = p.flip.cpu().numpy()
    geo = (f32(torch.cos(p.angle)), f32(torch.sin(p.angle)), f32(p.radial), f32(1.0 / p.stretch_x),
           f32(1.0 / p.stretch_y), off, f32(p.vig_strength), f32(p.vig_radius), rho)
    norm = (f32(scale.reshape(-1)), f32(shift.reshape(-1)))
    o = out.numpy()
    if direct.any():
        # images one at a time to whichever thread is free: a warped sample costs about twice a crop-only
        # one, and a static split of the batch leaves a thread idle when they fall unevenly
        with numba.parallel_chunksize(1):
            if packed:
                _kernel_packed(flat, _words(flat), sn, sy, h, w, direct.view(np.uint8), oy.numpy(), ox.numpy(),
                               simple.view(np.uint8), flip.view(np.uint8), *geo, uxs, *norm, *folds,
                               np.empty(n, np.uint8), o)
            else:
                _kernel_planar(flat, c, h, w, direct, oy.numpy(), ox.numpy(), simple, flip, *geo, *norm, *folds,
                               np.empty(n, np.uint8), o)
    if not direct.all():
        rmap, rw = _axis_maps(oy, s, h, edge)
        cmap, cw = _axis_maps(ox, s, w, edge)
        _kernel_mapped(flat, c, sn, sc, sy, sx, ~direct, rmap, rw, cmap, cw, simple, flip, *geo, *norm,
                       fill == "zeros", o)
    return out


_RHO: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _radius(s: int) -> tuple[np.ndarray, np.ndarray]:
    """(s, s) distance of each output pixel from the centre (1 at the corners), the vignette's argument,
    and the (s,) pixel centres in -1..1 it is made of."""
    if s not in _RHO:
        u = (torch.arange(s, dtype=torch.float32) * 2 + 1) / s - 1
        _RHO[s] = torch.sqrt((u[:, None] ** 2 + u[None, :] ** 2) * 0.5).numpy(), u.numpy()
    return _RHO[s]

"""The whole train-path augmentation as one fused CPU loop (numba), when numba is installed.

Why a hand-written kernel: on a 2-core CPU the PyTorch path (gather + ``grid_sample`` + elementwise
passes) runs the Deep Image preset at about a sixth of an OpenCV-based Albumentations pipeline
(``minwa bench augment``: ``minwa_torch_img_s``); ``grid_sample`` alone costs about as much per image
as the whole peer. This loop computes, for each output pixel, the same mapping as ``geometry.warp``
(flip + rotation + radial distortion / stretch, fill at the crop's edge), reads the four uint8 source
pixels, interpolates, adds the colour cast / PCA offset, applies the vignette, clamps and normalises,
writing each float once. Two variants: ``_kernel_direct`` for samples whose reach lies inside the image
(plain addressing; per output row, a vectorised pass for coordinates then a pass of loads), and
``_kernel_mapped`` for the rest (windows leaving the image through translation, zeros fill), which reads
through per-sample row / column fold maps. Samples with no rotation, distortion or stretch take an exact
one-load copy path. The result equals the PyTorch path to float rounding (tested for every fill).
On GPUs, and on CPUs without numba, the PyTorch path runs instead.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # optional accelerator: the PyTorch path is the reference and the fallback
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

from minwa.augment.params import AugmentParams

SMALL_BATCH = 1 << 20  # output values below which the kernel runs single-threaded
FILL_CODES = {"reflect": 0, "border": 1, "zeros": 2, "surround": 1}


def available() -> bool:
    return numba is not None


def _axis_maps(start: torch.Tensor, length: int, pad: int, size: int, fill: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample maps from window index ``-pad-1 .. length+pad+1`` to an image index and a 0/1 weight.

    ``start`` (N,) is the window's first image index; indices off the image are folded per ``fill``
    exactly as ``geometry.gather_windows`` folds them (reflect about the pixel edge, border, or zeros).
    """
    pos = start[:, None] + torch.arange(-pad - 1, length + pad + 2)[None, :]
    weight = torch.ones(pos.shape, dtype=torch.float32)
    if fill == "reflect":
        m = torch.remainder(pos, 2 * size)
        idx = torch.where(m < size, m, 2 * size - 1 - m)
    else:
        idx = pos.clamp(0, size - 1)
        if fill == "zeros":
            weight = ((pos >= 0) & (pos < size)).to(torch.float32)
    if fill == "zeros" and pad == 0:  # zeros at the crop's edge too: nothing outside the window is read
        weight[:, 0] = 0.0
        weight[:, length + 1 :] = 0.0
    return idx.to(torch.int32).numpy(), weight.numpy()


if numba is not None:

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, cache=True)
    def _kernel_mapped(flat, C, HW, W, todo, rmap, rw, cmap, cw, simple, flip, ca, sa, k, isx, isy, off, vs, vr,
                       rho, scale, shift, fill, pad, out):  # pragma: no cover - compiled
        """Any sample: image rows / columns through the fold maps (windows leaving the image, zeros fill)."""
        U = np.uintp
        N = out.shape[0]
        S = out.shape[2]
        SS = S * S
        one = np.float32(1.0)
        zero = np.float32(0.0)
        half = np.float32(0.5)
        full = np.float32(255.0)
        s_f = np.float32(S)
        ctr = s_f * half - half
        span = np.float32(2 * S)
        lo_c = np.float32(-pad - 1) if fill == 2 else np.float32(-pad)  # clamp range of coordinates
        hi_c = np.float32(S + pad) if fill == 2 else np.float32(S - 1 + pad)
        base_off = pad + 1  # window index -pad-1 is map entry 0
        inv_s = np.float32(2.0) / s_f
        inv_span = one / span
        two = np.float32(2.0)
        three = np.float32(3.0)
        reflect = fill == 0
        weighted = fill == 2
        o = out.reshape(-1)
        for r in prange(N * S):
            n = r // S
            if not todo[n]:
                continue
            i = r - n * S
            uy = np.float32(2 * i + 1) * (inv_s * half) - one
            b0 = U(n) * U(C) * U(HW)
            ob = U(n) * U(C) * U(SS) + U(i * S)
            r0 = vr[n]
            st = vs[n]
            inv = one / max(one - r0, np.float32(1e-3))
            rm = rmap[n]
            rwn = rw[n]
            cm = cmap[n]
            cwn = cw[n]
            offn = off[n]
            rho_i = rho[i]
            flipped = flip[n]
            if simple[n]:  # integer crop (+ flip): one source pixel per output pixel
                yy = U(i + base_off)
                ry = b0 + U(rm[yy]) * U(W)
                wy = rwn[yy]
                for j in range(S):
                    xx = U((S - 1 - j if flipped else j) + base_off)
                    t = min(max((rho_i[U(j)] - r0) * inv, zero), one)
                    m = one - st * t * t * (three - two * t)
                    w = wy * cwn[xx]
                    src = ry + U(cm[xx])
                    for c in range(C):
                        cu = U(c)
                        v = (np.float32(flat[src + cu * U(HW)]) * w + offn[cu]) * m
                        o[ob + cu * U(SS) + U(j)] = min(max(v, zero), full) * scale[cu] + shift[cu]
                continue
            c_a = ca[n]
            s_a = sa[n]
            kk = k[n]
            fx = isx[n] * s_f * half
            fy = isy[n] * s_f * half
            fs = -one if flipped else one
            for j in range(S):
                ux = (np.float32(2 * j + 1) * (inv_s * half) - one) * fs
                f = one + kk * (ux * ux + uy * uy)
                px = (c_a * ux - s_a * uy) * f * fx + ctr
                py = (s_a * ux + c_a * uy) * f * fy + ctr
                if reflect:  # reflect about the window's edges (-0.5, S-0.5), any number of times
                    tx = (px + half) * inv_span
                    tx = (tx - np.floor(tx)) * span
                    px = (span - tx if tx > s_f else tx) - half
                    ty = (py + half) * inv_span
                    ty = (ty - np.floor(ty)) * span
                    py = (span - ty if ty > s_f else ty) - half
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
                if weighted:  # zeros fill: pixels off the window or the image weigh nothing
                    w00 *= rwn[yi] * cwn[xi]
                    w01 *= rwn[yi] * cwn[xi + U(1)]
                    w10 *= rwn[yi + U(1)] * cwn[xi]
                    w11 *= rwn[yi + U(1)] * cwn[xi + U(1)]
                ry0 = b0 + U(rm[yi]) * U(W)
                ry1 = b0 + U(rm[yi + U(1)]) * U(W)
                cx0 = U(cm[xi])
                cx1 = U(cm[xi + U(1)])
                t = min(max((rho_i[U(j)] - r0) * inv, zero), one)
                m = one - st * t * t * (three - two * t)
                a00 = ry0 + cx0
                a01 = ry0 + cx1
                a10 = ry1 + cx0
                a11 = ry1 + cx1
                for c in range(C):
                    cu = U(c)
                    cs = cu * U(HW)
                    v = (np.float32(flat[a00 + cs]) * w00 + np.float32(flat[a01 + cs]) * w01
                         + np.float32(flat[a10 + cs]) * w10 + np.float32(flat[a11 + cs]) * w11)
                    v = (v + offn[cu]) * m
                    o[ob + cu * U(SS) + U(j)] = min(max(v, zero), full) * scale[cu] + shift[cu]

    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, cache=True)
    def _kernel_direct(flat, C, HW, W, todo, oy, ox, simple, flip, ca, sa, k, isx, isy, off, vs, vr, rho,
                       scale, shift, reflect, pad, out):  # pragma: no cover - compiled
        """Samples whose reach (window +- pad, + 1 pixel) lies inside the image: plain addressing.

        Two passes per output row: the coordinates, weights and vignette of the whole row (a loop the
        compiler vectorises), then the uint8 loads and the interpolation.
        """
        U = np.uintp
        N = out.shape[0]
        S = out.shape[2]
        SS = S * S
        one = np.float32(1.0)
        zero = np.float32(0.0)
        half = np.float32(0.5)
        full = np.float32(255.0)
        two = np.float32(2.0)
        three = np.float32(3.0)
        s_f = np.float32(S)
        ctr = s_f * half - half
        span = np.float32(2 * S)
        inv_span = one / span
        lo_c = np.float32(-pad)
        hi_c = np.float32(S - 1 + pad)
        o = out.reshape(-1)
        uxs = (np.arange(S).astype(np.float32) * two + one) / s_f - one
        for n in prange(N):
            if not todo[n]:
                continue
            wxs = np.empty(S, np.float32)
            wys = np.empty(S, np.float32)
            ms = np.empty(S, np.float32)
            addr = np.empty(S, np.int64)
            c_a = ca[n]
            s_a = sa[n]
            kk = k[n]
            fx = isx[n] * s_f * half
            fy = isy[n] * s_f * half
            fs = -one if flip[n] else one
            r0 = vr[n]
            st = vs[n]
            inv = one / max(one - r0, np.float32(1e-3))
            base = np.int64(n) * C * HW + np.int64(oy[n]) * W + np.int64(ox[n])
            offn = off[n]
            is_simple = simple[n]
            for i in range(S):
                uy = uxs[i]
                rho_i = rho[i]
                if is_simple:
                    for j in range(S):
                        addr[j] = np.int64(i) * W + (S - 1 - j if fs < zero else j)
                        t = min(max((rho_i[j] - r0) * inv, zero), one)
                        ms[j] = one - st * t * t * (three - two * t)
                else:
                    for j in range(S):  # pass 1: vectorised
                        ux = uxs[j] * fs
                        f = one + kk * (ux * ux + uy * uy)
                        px = (c_a * ux - s_a * uy) * f * fx + ctr
                        py = (s_a * ux + c_a * uy) * f * fy + ctr
                        if reflect:  # about the window's edges (-0.5, S-0.5), any number of times
                            tx = (px + half) * inv_span
                            tx = (tx - np.floor(tx)) * span
                            px = (span - tx if tx > s_f else tx) - half
                            ty = (py + half) * inv_span
                            ty = (ty - np.floor(ty)) * span
                            py = (span - ty if ty > s_f else ty) - half
                        px = min(max(px, lo_c), hi_c)
                        py = min(max(py, lo_c), hi_c)
                        x0 = np.floor(px)
                        y0 = np.floor(py)
                        wxs[j] = px - x0
                        wys[j] = py - y0
                        addr[j] = np.int64(y0) * W + np.int64(x0)
                        t = min(max((rho_i[j] - r0) * inv, zero), one)
                        ms[j] = one - st * t * t * (three - two * t)
                ob = U(n) * U(C) * U(SS) + U(i * S)
                for c in range(C):  # pass 2: loads and interpolation
                    cb = base + np.int64(c) * HW
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


def run(images: torch.Tensor, p: AugmentParams, out_size: int, fill: str, margin: int,
        scale: torch.Tensor, shift: torch.Tensor, offset: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """float32 (N, C, out, out), normalised; ``images`` uint8 on the CPU. Erasing is left to the caller."""
    n, c, h, w = images.shape
    s = out_size
    pad = margin if fill == "surround" else 0
    edge = "border" if fill == "surround" else fill
    oy, ox = p.oy.cpu(), p.ox.cpu()
    simple = ((p.angle == 0) & (p.radial == 0) & (p.stretch_x == 1) & (p.stretch_y == 1)).cpu()
    # plain addressing where every pixel the sample can read (window +- pad, +1 for interpolation) is inside
    direct = (oy - pad >= 0) & (oy + s + pad < h) & (ox - pad >= 0) & (ox + s + pad < w)
    direct = direct & torch.tensor(fill != "zeros")
    u = (torch.arange(s, dtype=torch.float32) * 2 + 1) / s - 1
    rho = torch.sqrt((u[:, None] ** 2 + u[None, :] ** 2) * 0.5).numpy()
    f32 = lambda t: t.detach().to("cpu", torch.float32).contiguous().numpy()  # noqa: E731
    off = f32(p.offset[:, :c]) if offset else np.zeros((n, c), np.float32)
    if out is None:
        out = torch.empty(n, c, s, s, dtype=torch.float32)
    # a small batch (a 256-image Fashion-MNIST batch is 0.2M outputs) is done before a second thread
    # would even be scheduled on a busy machine: run it on the calling thread alone
    threads = torch.get_num_threads() if n * c * s * s >= SMALL_BATCH else 1
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    flat = images.contiguous().reshape(-1).numpy()
    flip = p.flip.cpu().numpy()
    geo = (f32(torch.cos(p.angle)), f32(torch.sin(p.angle)), f32(p.radial), f32(1.0 / p.stretch_x),
           f32(1.0 / p.stretch_y), off, f32(p.vig_strength), f32(p.vig_radius), rho,
           f32(scale.reshape(-1)), f32(shift.reshape(-1)))
    if bool(direct.any()):
        _kernel_direct(flat, c, h * w, w, direct.numpy(), oy.numpy(), ox.numpy(), simple.numpy(), flip, *geo,
                       fill == "reflect", pad, out.numpy())
    if not bool(direct.all()):
        rmap, rw = _axis_maps(oy, s, pad, h, edge)
        cmap, cw = _axis_maps(ox, s, pad, w, edge)
        _kernel_mapped(flat, c, h * w, w, (~direct).numpy(), rmap, rw, cmap, cw, simple.numpy(), flip, *geo,
                       FILL_CODES[fill], pad, out.numpy())
    return out

"""``minwa plan``: an analytical model of training at cluster scale (step time, images/s, speed-up).

- :class:`PlanConfig` (``minwa.plan.config``): model, input size, strategies, batch, precision, hardware;
- :func:`profile_model` (``minwa.plan.profile``): per-layer FLOPs and bytes from torch's own counter;
- :func:`plan` (``minwa.plan.predict``): the sweep over GPU counts, with the best strategy per size;
- :func:`calibrate` (``minwa.plan.calibrate``): fit the achieved-compute fraction and a constant overhead
  to ``minwa bench throughput`` / ``bench scaling`` JSON.

Names are imported on first use, so that reading ``PlanConfig`` does not pull in torch.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "PlanConfig": "minwa.plan.config",
    "profile_model": "minwa.plan.profile",
    "plan": "minwa.plan.predict",
    "calibrate": "minwa.plan.calibrate",
})

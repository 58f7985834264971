"""``minwa serve``: checkpoints (one, or several as an ensemble) behind HTTP, with dynamic batching.

``ServeConfig`` (torch-free) holds the settings; ``Engine`` loads the members and computes probabilities
through the eval path (``minwa.evaluate.pipeline.batch_probs``); ``Batcher`` joins concurrent requests into
one forward pass; ``build_app(engine, cfg)`` is the ASGI app; ``serve(cfg)`` runs it on uvicorn. Names are
imported on first use, so reading the config does not pull in torch or Starlette.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "ServeConfig": "minwa.serve.config",
    "Engine": "minwa.serve.engine",
    "Batcher": "minwa.serve.batcher",
    "build_app": "minwa.serve.app",
    "serve": "minwa.serve.server",
})

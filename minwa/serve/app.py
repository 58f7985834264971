"""The ASGI app: ``POST /v1/classify``, ``GET /v1/models``, ``/healthz``, ``/readyz``, ``/metrics`` and the
web page at ``/``.

A request is admitted only while fewer than ``max_queue`` are in flight (else 503 with Retry-After: the
backlog is bounded, never unbounded); its body is read up to ``max_bytes`` (else 413), decoded in a decode
thread (else 400 with the decoder's sentence) and handed to the ``Batcher``. Anything else that goes wrong
is a 500 with one sentence; the batcher thread and the event loop live on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from minwa.errors import MinwaError
from minwa.serve.batcher import Batcher
from minwa.serve.config import ServeConfig
from minwa.serve.metrics import Metrics
from minwa.serve.upload import Refused, image_and_fields, parse_options, read_body

RETRY_AFTER_S = 1


class Service:
    """What the routes share: the engine, its batcher, the decode threads, the metrics, admission."""

    def __init__(self, engine, cfg: ServeConfig):
        self.engine, self.cfg = engine, cfg
        self.in_flight = 0  # touched only on the event loop's thread
        self.ready = False
        self.batcher = Batcher(lambda images, key: engine.probs(images, *key), cfg.max_batch,
                               cfg.max_delay_ms / 1000, on_batch=lambda n, s: self.metrics.batch(n, s),
                               instances=engine.instances, on_start=engine.enter_instance)
        self.metrics = Metrics(cfg.max_batch, self.batcher.depth, lambda: self.in_flight)
        self.decoders = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="minwa-decode")
        self.page = resources.files("minwa.serve").joinpath("page.html").read_text(encoding="utf-8")

    def warm_up(self) -> None:
        if self.cfg.warmup:
            self.engine.warm_up(self.cfg.max_batch, self.cfg.warmup_s)
        self.ready = True
        self.metrics.ready.set(1)

    async def classify(self, request: Request) -> dict:
        t0 = time.perf_counter()
        if not self.ready:
            raise Refused(503, "not_ready", "the model is still warming up; retry shortly", RETRY_AFTER_S)
        if self.in_flight >= self.cfg.max_queue:
            raise Refused(503, "overloaded", f"the server is at capacity ({self.in_flight} requests in flight); "
                                             f"retry after {RETRY_AFTER_S} s", RETRY_AFTER_S)
        self.in_flight += 1
        try:
            return await self._classify(request, t0)
        finally:
            self.in_flight -= 1

    async def _classify(self, request: Request, t0: float) -> dict:
        body = await read_body(request, self.cfg.max_bytes)
        data, fields = await image_and_fields(request, body, self.cfg.max_bytes)
        opts = parse_options(request.query_params, fields, self.cfg.topk, self.cfg.flip)
        if not data:
            raise Refused(400, "bad_image", "the request holds no image: send its bytes as the body, or as the "
                                            "multipart file field 'image'")
        try:
            scales = self.engine.check_scales(opts.scales)
        except MinwaError as e:
            raise Refused(400, "bad_request", str(e)) from None
        t_body = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(self.decoders, self.engine.decode, data, scales)
        except MinwaError as e:
            raise Refused(400, "bad_image", str(e)) from None
        t_decoded = time.perf_counter()
        try:
            done = await asyncio.wrap_future(self.batcher.submit(image, (scales, opts.flip)))
        except MinwaError as e:
            raise Refused(400, "bad_request", str(e)) from None
        seconds = time.perf_counter() - t0
        self.metrics.latency.observe(seconds)
        self.metrics.requests.labels("200").inc()
        ms = lambda s: round(s * 1000, 3)  # noqa: E731
        return {
            "top": self.engine.top(done.probs, opts.topk),
            "models": self.engine.names,
            "image": {"height": int(image.shape[0]), "width": int(image.shape[1])},
            "views": {"scales": list(scales), "flip": opts.flip},
            "batch_size": done.batch_size,
            "latency_ms": ms(seconds),
            "timing_ms": {"receive": ms(t_body - t0), "decode": ms(t_decoded - t_body), "queue": ms(done.queued_s),
                          "inference": ms(done.inference_s)},
        }


def build_app(engine, cfg: ServeConfig, *, warm_up_in_background: bool = True) -> Starlette:
    """The app for ``engine``; its lifespan starts the batcher and warms up (``/readyz`` says when done)."""
    svc = Service(engine, cfg)

    async def classify(request: Request) -> Response:
        try:
            return JSONResponse(await svc.classify(request))
        except Refused as e:
            return _refusal(svc, e.status, e.kind, str(e), e.retry_after)
        except Exception as e:  # noqa: BLE001 - one sentence and a 500; the server lives on
            return _refusal(svc, 500, "internal", f"internal error: {type(e).__name__}: {e}".split("\n")[0])

    async def models(request: Request) -> Response:
        return JSONResponse(engine.describe())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if svc.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "warming up"}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    async def metrics(request: Request) -> Response:
        return Response(svc.metrics.text(), media_type=svc.metrics.content_type)

    async def page(request: Request) -> Response:
        return HTMLResponse(svc.page)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        svc.batcher.start()
        warm = asyncio.create_task(asyncio.to_thread(svc.warm_up))
        if not warm_up_in_background:
            await warm
        try:
            yield
        finally:
            if not warm.done():
                await warm  # the model is in use by the warm-up thread until it returns
            svc.batcher.stop()
            svc.decoders.shutdown(wait=True, cancel_futures=True)

    app = Starlette(routes=[
        Route("/", page), Route("/v1/classify", classify, methods=["POST"]), Route("/v1/models", models),
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
    ], lifespan=lifespan)
    app.state.service = svc
    return app


def _refusal(svc: Service, status: int, kind: str, message: str, retry_after: int | None = None) -> Response:
    svc.metrics.error(kind)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)

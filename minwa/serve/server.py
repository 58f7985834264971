"""``serve(cfg)``: load the checkpoints, bind the socket, run the app on uvicorn until Ctrl-C or SIGTERM.

The socket is bound here, before uvicorn starts, so a taken port or a bad host is one sentence
(``MinwaError``) rather than a log line, and ``port = 0`` picks a free port and says which.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys

import uvicorn

from minwa.errors import MinwaError
from minwa.serve.app import build_app
from minwa.serve.config import ServeConfig, check
from minwa.serve.engine import Engine


def bind(host: str, port: int) -> socket.socket:
    """The listening socket. Its protocol is named (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY only on
    connections whose socket says TCP, and without it a kept-alive connection's answer (headers, then
    body) waits ~40 ms for the client's delayed ACK (Nagle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = "the port is in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise MinwaError(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(2048)
    return sock


def serve(cfg: ServeConfig, members=None) -> int:
    check(cfg)
    sock = bind(cfg.host, cfg.port)
    engine = Engine(cfg, members)
    app = build_app(engine, cfg)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {' + '.join(engine.names)} ({len(engine.classes)} classes, {engine.device}, {engine.precision}) "
          f"at http://{shown}:{port}/  (ready once warmed up: /readyz)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=10))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: Ctrl-C's KeyboardInterrupt is caught below and SIGTERM's is a no-op, so a stop is exit 0
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped", file=sys.stderr, flush=True)
    return 0

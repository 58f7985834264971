"""`minwa serve CKPT...`: checkpoints (one, or several as an ensemble) behind HTTP with dynamic batching."""

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.errors import MinwaError
from minwa.serve.config import ServeConfig, check

HELP = "serve checkpoints over HTTP: POST /v1/classify, a web page at /, dynamic batching, /metrics"
DESCRIPTION = """Serve checkpoints over HTTP (docs/serving.md). The settings are the fields of ServeConfig
(--print-config lists them): a TOML/YAML file (--config), then the flags below, then overrides
(--set max_queue=64 --set runtime.threads=2 ...)."""


def add_arguments(p):
    p.add_argument("ckpts", nargs="*", metavar="CKPT",
                   help="checkpoint (x.safetensors, x.json, or a run folder); several = an ensemble (= ckpts)")
    add_config_arguments(p, "max_queue=64")
    p.add_argument("--host", help="address to listen on (= host; default 127.0.0.1, 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port (= port; default 8000, 0 = any free port)")
    p.add_argument("--max-batch", type=int, metavar="N", help="images per forward pass, at most (= max_batch; default 32)")
    p.add_argument("--max-delay-ms", type=float, metavar="MS",
                   help="how long a request waits for others to join its batch (= max_delay_ms; default 5)")
    p.add_argument("--instances", type=int, metavar="N",
                   help="model instances computing batches side by side (= instances; default 0: 2 on a CPU, 1 on a GPU)")
    p.add_argument("--max-bytes", type=int, metavar="N", help="larger bodies are answered 413 (= max_bytes; default 20 MB)")


def resolve_config(args) -> ServeConfig:
    """ServeConfig's defaults -> file -> flags -> --set, in that order."""
    flags = {"ckpts": args.ckpts or None, "host": args.host, "port": args.port, "max_batch": args.max_batch,
             "max_delay_ms": args.max_delay_ms, "instances": args.instances, "max_bytes": args.max_bytes}
    return config_io.load(ServeConfig(), args.config, args.overrides, flags=flags)


def run(args) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    check(cfg)  # before any checkpoint is read
    # torch, Starlette and uvicorn are imported only when the server runs (`minwa --help` imports every command)
    from minwa.models.checkpoint import describe_checkpoint

    try:
        from minwa.serve.server import serve
    except ImportError as e:
        raise MinwaError(f"minwa serve needs its extra dependencies (pip install 'minwa[serve]'): {e}") from None

    if not cfg.ckpts:
        raise MinwaError("no checkpoint given: minwa serve CKPT [CKPT ...] (several form an ensemble)")
    for ckpt in cfg.ckpts:
        print(f"checkpoint {describe_checkpoint(ckpt)}", flush=True)
    return serve(cfg)

"""The options every configured command (train, eval) shares: one configuration path, so that a field is
set the same way everywhere (file, then the command's shorthand flags, then ``--set``; ``minwa.config.load``)."""


def add_config_arguments(p, example: str) -> None:
    """``--config FILE``, ``--set KEY=VALUE`` (repeatable, into ``args.overrides``) and ``--print-config``."""
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file of settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override any config field, e.g. {example} (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

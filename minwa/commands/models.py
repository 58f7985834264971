"""`minwa models`: the registered models with their parameter counts."""

HELP = "list the registered models (parameter counts at 1,000 classes)"


def add_arguments(p):
    p.add_argument("--classes", type=int, default=1000, help="number of classes for the counts")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from minwa.models import count_parameters, list_models

    table = Table(title=f"minwa models ({args.classes} classes)")
    table.add_column("model")
    table.add_column("parameters", justify="right")
    for name in list_models():
        table.add_row(name, f"{count_parameters(name, args.classes) / 1e6:.2f}M")
    Console().print(table)
    return 0

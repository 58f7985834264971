"""`minwa train`: a recipe, a config file, then command-line overrides; one call to minwa.train.train."""

HELP = "train a model (recipe + config file + key=value overrides)"
DESCRIPTION = """Train a model. The configuration is a recipe (--recipe; by default the one that fits the data:
'fashion' for small images of one size like Fashion-MNIST's, 'photos' otherwise), then a TOML/YAML file
(--config), then overrides (--set optim.lr=0.1 --set data.batch_size=512 ...). Without --val, a tenth of
each class of the training data validates (data.val_fraction). Launch with torchrun for several processes or GPUs; parallel.strategy picks fsdp | butterfly | hybrid."""

import os

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.errors import MinwaError
from minwa.train.config import TrainConfig
from minwa.train.recipes import get_recipe, recipe_for_data
from minwa.train.resume_config import resume_config


def add_arguments(p):
    p.add_argument("--recipe", help="starting recipe (photos, fashion, deepimage16-256, finetune, ...; "
                                    "default: chosen from the data)")
    add_config_arguments(p, "optim.lr=0.05")
    p.add_argument("--data", metavar="PATH", help="training data: shards folder or raw source (= data.train)")
    p.add_argument("--val", metavar="PATH", help="validation data (= data.val)")
    p.add_argument("--out", metavar="DIR", help="run folder (= out)")
    p.add_argument("--epochs", type=float, help="(= epochs)")
    p.add_argument("--model", help="registry name (= model.name)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint (fine-tuning)")
    p.add_argument("--finetune", choices=["all", "fc", "head"], help="with --init: which layers train")
    p.add_argument("--resume", metavar="DIR", help="continue a run exactly from its saved state, with its own settings "
                   "(only epochs, time budget, intervals, workers, threads may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run's outputs in --out (= overwrite=true; otherwise refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the summary and epoch lines stay)")


def resolve_config(args):
    """Recipe → file → flags → --set, in that order (so an explicit --set overwrite=... beats --overwrite)."""
    # data named on the command line are recorded absolute, so eval and predict find them from anywhere
    flags = {"data.train": _absolute(args.data), "data.val": _absolute(args.val), "out": args.out, "epochs": args.epochs,
             "model.name": args.model, "init": args.init, "finetune": args.finetune, "resume": args.resume,
             "overwrite": args.overwrite or None}
    if args.resume:
        if args.recipe:
            raise MinwaError("--resume continues a run with its own saved settings; leave out --recipe")
        cfg = resume_config(TrainConfig, args.resume, args.config, args.overrides, flags=flags)
        if cfg is not None:
            return cfg
    recipe = args.recipe
    if recipe is None or recipe == "finetune":  # the recipe that fits the data, found where the data is named
        data = config_io.load(get_recipe("photos"), args.config, args.overrides, flags=flags).data.train
        if recipe is None:
            recipe, why = recipe_for_data(data)
            if why and not args.print_config and os.environ.get("RANK", "0") == "0":  # said once, by rank 0
                print(f"recipe: {recipe} ({why}; --recipe to choose another)")
        return config_io.load(get_recipe(recipe, data), args.config, args.overrides, flags=flags)
    return config_io.load(get_recipe(recipe), args.config, args.overrides, flags=flags)


def _absolute(path):
    return os.path.abspath(os.path.expanduser(path)) if path else path


def run(args) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(config_io.dump_toml(cfg), end="")
        return 0
    from minwa.train import train

    result = train(cfg, progress=not args.quiet)
    if result.is_main:
        print(summary(result))
    return 0


def summary(result) -> str:
    """One line: what the run reached, or, for a resumed run that had finished, that nothing was done."""
    val = (f"val top-1 {result.val_accuracy:.2%} (best {result.best_accuracy:.2%})"
           if result.val_accuracy == result.val_accuracy else "no validation set")
    if result.already_complete:
        return (f"the run in {result.out} is already complete ({result.epochs:.1f} epochs; {val}); nothing was "
                f"changed (raise --epochs to train further)")
    best = (f"; best (epoch {result.best_epoch:g}, used for the run folder by eval/predict) {result.best_checkpoint}"
            if result.best_checkpoint else "")
    return (f"{val} after {result.epochs:.1f} epochs, {result.train_seconds:.0f} s, {result.images_per_s:.0f} img/s; "
            f"final {result.checkpoint}{best}")

"""`minwa augment-preview IMAGE --out grid.png`: Deep Image Figure 4 for one image, for the deepimage
preset or a run's own augmentation (--config RUN/config.toml, --ckpt RUN; then --set augment.X=...)."""

from minwa import config as config_io
from minwa.commands.config_args import add_config_arguments
from minwa.errors import MinwaError, require_path
from minwa.utils.atomic import atomic_write_bytes
from minwa.utils.output import prepare_output_file

HELP = "draw the augmentations of one image (Deep Image Figure 4): a row per transform + all combined"


def add_arguments(p):
    from minwa.commands.predict import add_max_pixels

    p.add_argument("image", help="an image file (JPEG, PNG, ...)")
    p.add_argument("--out", default="augment_preview.png", help="PNG to write (default: augment_preview.png)")
    add_config_arguments(p, "augment.rotation=5")
    p.add_argument("--ckpt", metavar="PATH", help="preview the augmentation a checkpoint's run trained with "
                                                  "(x.safetensors, x.json or a run folder)")
    p.add_argument("--scale", type=int, help="shorter side of the scaled image S (default: the run's, else 320)")
    p.add_argument("--crop", type=int, help="crop size C the network sees (default: the run's, else 224)")
    p.add_argument("--samples", type=int, default=6, help="examples per row (default 6)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed")
    p.add_argument("--fill", choices=["reflect", "surround", "border", "zeros"],
                   help="how rotated / distorted corners are filled (= --set augment.fill=...)")
    add_max_pixels(p)


def run(args) -> int:
    import io

    # torch and the decoders: loaded only when this command runs, not for every `minwa --help`
    from minwa.augment.preview import DEFAULT_CROP, DEFAULT_SCALE, preview_grid, run_augmentation
    from minwa.data.decode import read_image

    path = require_path(args.image, "image")
    source = run_augmentation(args.config, args.ckpt, args.overrides, args.fill)
    scale = args.scale or source.scale or DEFAULT_SCALE
    crop = args.crop or source.crop or DEFAULT_CROP
    if args.print_config:
        print(f"# scale {scale}, crop {crop}; last row: {source.name}\n[augment]")
        print(config_io.dump_toml(source.augment), end="")
        return 0
    if crop < 8 or scale < crop or args.samples < 1 or args.max_pixels < 0:
        raise MinwaError("augment-preview needs --scale >= --crop >= 8, --samples >= 1 and --max-pixels >= 0")
    prepare_output_file(args.out, "preview image")  # before the image is read and augmented
    image = read_image(path, 3, args.max_pixels)
    sheet = preview_grid(image, scale, crop, args.samples, args.seed, source)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}; last row: {source.name}, scale {scale}, crop {crop})")
    return 0

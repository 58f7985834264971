"""`minwa augment-preview IMAGE --out grid.png`: Deep Image Figure 4 for one image."""

HELP = "draw the augmentations of one image (Deep Image Figure 4): a row per transform + all combined"


def add_arguments(p):
    from minwa.commands.predict import add_max_pixels

    p.add_argument("image", help="an image file (JPEG, PNG, ...)")
    p.add_argument("--out", default="augment_preview.png", help="PNG to write (default: augment_preview.png)")
    p.add_argument("--scale", type=int, default=320, help="shorter side of the scaled image S (default 320)")
    p.add_argument("--crop", type=int, default=224, help="crop size C the network sees (default 224)")
    p.add_argument("--samples", type=int, default=6, help="examples per row (default 6)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed")
    p.add_argument("--fill", default="reflect", choices=["reflect", "surround", "border", "zeros"],
                   help="how rotated / distorted corners are filled (default reflect)")
    add_max_pixels(p)


def run(args) -> int:
    import io

    from minwa.augment.preview import preview_grid
    from minwa.data.decode import read_image
    from minwa.errors import MinwaError, require_path
    from minwa.utils.atomic import atomic_write_bytes
    from minwa.utils.output import prepare_output_file

    path = require_path(args.image, "image")
    if args.crop < 8 or args.scale < args.crop or args.samples < 1 or args.max_pixels < 0:
        raise MinwaError("augment-preview needs --scale >= --crop >= 8, --samples >= 1 and --max-pixels >= 0")
    prepare_output_file(args.out, "preview image")  # before the image is read and augmented
    image = read_image(path, 3, args.max_pixels)
    sheet = preview_grid(image, args.scale, args.crop, args.samples, args.seed, args.fill)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0

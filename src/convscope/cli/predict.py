"""convscope predict: the top-k classes of each image, like the ILSVRC output."""

from __future__ import annotations

import sys
from pathlib import Path

from convscope.cli.common import add_command, positive_int, print_json
from convscope.cli.visualize import check_out
from convscope.errors import ImageError
from convscope.images import to_pil
from convscope.loading import open_model
from convscope.render.figures import predictions_figure, save_figure


def register(sub) -> None:
    p = add_command(sub, "predict", "top-k classes with probabilities for image files",
                    "Print the top-k labels of each image with their probabilities. Any common "
                    "image file works; it is converted to what the model expects.",
                    ("convscope predict efficientnet-lite0 cat.jpg coffee.jpg --out top5.png",
                     "convscope predict resnet18 --weights DEFAULT dog.jpg --top-k 3"), run=run)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="how many classes (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", metavar="PNG", help="also draw each image above the bars of its "
                   "top-k classes, as the ILSVRC slide does")


def run(args) -> int:
    if args.out:
        check_out(args.out)
    clf = open_model(args.model, args.weights, args.device)
    results, failures, shown = [], 0, []
    for path in args.images:
        try:
            top = clf.topk(path, k=args.top_k)[0]
        except ImageError as exc:
            failures += 1
            print(f"convscope predict: error: {exc}", file=sys.stderr)
            results.append({"image": path, "error": str(exc)})
            continue
        results.append({
            "image": path,
            "top": [{"label": lab, "index": clf.classes.index(lab), "probability": round(p, 6)}
                    for lab, p in top],
        })
        if args.out:
            photo = to_pil(path)
            photo.thumbnail((448, 448))
            shown.append((photo, top, Path(path).name))
        if not args.json:
            print(f"{path}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in top))
    if args.out and shown:
        photos, tops, names = zip(*shown)
        save_figure(predictions_figure(photos, tops, names), args.out,
                    config={"model": args.model, "top_k": args.top_k})
    if args.json:
        print_json(results)
    elif args.out and shown:
        print(f"wrote {args.out}")
    return 1 if failures else 0

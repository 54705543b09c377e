"""convscope predict: the top-k classes of each image, like the ILSVRC output."""

from __future__ import annotations

import sys

from convscope.cli.common import add_command, positive_int, print_json
from convscope.errors import ImageError
from convscope.loading import open_model


def register(sub) -> None:
    p = add_command(sub, "predict", "top-k classes with probabilities for image files",
                    "Print the top-k labels of each image with their probabilities. Any common "
                    "image file works; it is converted to what the model expects.",
                    ("convscope predict resnet18 --weights DEFAULT dog.jpg --top-k 3",), run=run)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="how many classes (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    results, failures = [], 0
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
        if not args.json:
            print(f"{path}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in top))
    if args.json:
        print_json(results)
    return 1 if failures else 0

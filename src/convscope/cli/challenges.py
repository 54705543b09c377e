"""convscope challenges: the lecture's six recognition challenges as accuracy curves."""

from __future__ import annotations

import sys

from convscope import distributed
from convscope.cli.common import add_command, print_json
from convscope.cli.options import add_options, config_from
from convscope.inspect.challenges import (
    GROUPS,
    ChallengesConfig,
    challenges,
    list_challenges,
)


def register(sub) -> None:
    p = add_command(
        sub, "challenges", "accuracy under the lecture's six challenges, severity 0 to 5",
        "Measure top-1 accuracy on the test images under the lecture's six "
        "recognition challenges (viewpoint: rotation, scale, perspective, "
        "translation; illumination: brightness, contrast, gamma, colour "
        "temperature; deformation: elastic; occlusion: random and evidence-placed "
        "patches; background clutter; intra-class variation), each from severity "
        "0 (the plain images) to severe. Writes DIR/curves.png, DIR/strips.png and "
        "DIR/challenges.json with every parameter and the seed.",
        ("convscope challenges runs/demo/model.safetensors --out runs/demo/challenges",
         "convscope challenges runs/aug/model.safetensors --compare "
         "runs/noaug/model.safetensors --out cmp",
         "convscope challenges runs/a/model.safetensors --baseline "
         "runs/b/model.safetensors --only viewpoint,occlusion --out dir --json"),
        data=True, run=run_challenges)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for curves.png, strips.png and challenges.json")
    add_options(p, ChallengesConfig, only=("n", "severities", "only"), more={
        "only": ": " + ", ".join(list_challenges()) + "; groups: " + ", ".join(GROUPS)})
    p.add_argument("--compare", action="append", default=[], metavar="MODEL2",
                   help="another model with the same classes, drawn on the same plots "
                        "(repeatable)")
    p.add_argument("--baseline", metavar="MODEL",
                   help="score the mean corruption error (mCE) against this model")
    add_options(p, ChallengesConfig, skip=("n", "severities", "only"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print every number as one JSON object")


def run_challenges(args) -> int:
    # the model goes in by name, so the curves and the table call it what the user typed
    result = challenges(args.model, args.data, config_from(ChallengesConfig, args),
                        weights=args.weights, device=args.device, compare=list(args.compare),
                        baseline=args.baseline, data_root=args.data_root,
                        image_size=args.image_size, progress=not args.quiet)
    paths = result.save(args.out) if distributed.current().is_main else {}
    say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.json:
        print_json({"command": "challenges", "model": str(args.model), **result.to_dict(),
                    "files": paths})
    else:
        print(result.format())
    for path in paths.values():
        say(f"wrote {path}")
    return 0

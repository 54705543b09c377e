"""convscope report / serve: the picture of a model as one HTML page, or as a local web app."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from convscope import distributed
from convscope.cli.common import (
    add_data_args,
    add_model_args,
    float_in,
    int_in,
    positive_int,
    seed_int,
)
from convscope.cli.options import ListAction, renamed
from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.attribution import list_methods
from convscope.loading import open_model
from convscope.render.report import (
    SECTIONS,
    ReportConfig,
    build_report,
    list_sections,
    open_report_data,
)
from convscope.render.server import LOOPBACK, ServeConfig, free_port, serve


def register(sub) -> None:
    d = ReportConfig()
    sections = "\n".join(f"  {s.name:<13} {'(costly) ' if s.costly else ''}{s.title}"
                         for s in SECTIONS.values())
    p = sub.add_parser(
        "report", help="one self-contained HTML page: accuracy, mistakes, explanations, ...",
        description="Write one HTML file (pictures embedded, no network needed to view it) "
                    "with the model's layer table, training curves, test accuracy, confusion "
                    "matrix, most confident mistakes, first-layer filters, feature and pixel "
                    "neighbours, a t-SNE map, maximally activating patches, attribution maps "
                    "and their faithfulness, class visualisations and the six challenges.",
        epilog=f"sections (--sections / --skip):\n{sections}\n\nexamples:\n"
               "  convscope report runs/demo/model.safetensors --out runs/demo/report.html\n"
               "  convscope report runs/cifar/model.safetensors --skip costly --out quick.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--out", required=True, metavar="HTML", help="the page to write (.html)")
    p.add_argument("--sections", action=ListAction, allowed=SECTIONS, metavar="NAME",
                   help="only these sections, in this order (default: all)")
    p.add_argument("--skip", action=ListAction, allowed=[*SECTIONS, "costly"], default=[],
                   metavar="NAME", help="leave these sections out; `costly` leaves out every "
                                        "costly one")
    p.add_argument("--embed-n", dest="n", type=positive_int, default=d.n, metavar="N",
                   help=f"test images in the t-SNE map (default {d.n})")
    p.add_argument("--wrong", type=positive_int, default=d.wrong,
                   help=f"confidently wrong images shown (default {d.wrong})")
    p.add_argument("--explain-n", dest="explain_images", type=positive_int, default=d.explain_images,
                   metavar="N", help=f"images with attribution maps (default {d.explain_images})")
    p.add_argument("--faithfulness-n", dest="faithfulness_images", type=positive_int, default=d.faithfulness_images,
                   metavar="N",
                   help=f"images scored for faithfulness (default {d.faithfulness_images})")
    p.add_argument("--class-n", dest="class_images", type=positive_int, default=d.class_images, metavar="N",
                   help=f"classes visualised, the first N (default {d.class_images})")
    p.add_argument("--class-steps", type=positive_int, default=d.class_steps, metavar="N",
                   help=f"gradient-ascent steps per class image (default {d.class_steps})")
    p.add_argument("--judge", metavar="MODEL",
                   help="a second model trained apart on the same classes: its probability "
                        "and top-1 on the class images are shown beside p")
    p.add_argument("--neighbour-database", type=positive_int, default=d.neighbour_database,
                   metavar="N", help="training images searched for neighbours (default "
                                     f"{d.neighbour_database:,})")
    p.add_argument("--patch-units", type=positive_int, default=d.patch_units, metavar="N",
                   help=f"channels shown with their top patches, at most 16 (default "
                        f"{d.patch_units})")
    p.add_argument("--challenge-n", dest="challenge_images", type=positive_int, default=d.challenge_images,
                   metavar="N", help="test images scored under the six challenges (default "
                                     f"{d.challenge_images})")
    for new, old in (("--embed-n", "--n"), ("--explain-n", "--explain-images"),
                     ("--faithfulness-n", "--faithfulness-images"),
                     ("--class-n", "--class-images"), ("--challenge-n", "--challenge-images")):
        renamed(p, new, old)
    p.add_argument("--metrics", metavar="JSONL",
                   help="training curves from this file (default: metrics.jsonl next to MODEL)")
    p.add_argument("--seed", type=seed_int, default=d.seed, help="which sample images (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_report)

    s = sub.add_parser(
        "serve", help="a local web app: upload images, browse test images, explanations",
        description="Start a local web app (offline, no CDN): drop in an image to see the "
                    "top-5 and each explanation method's overlay, browse the test images.",
        epilog="example:\n  convscope serve runs/demo/model.safetensors --port 8000\n\n"
               "It listens on 127.0.0.1 (this machine only) unless --host says otherwise.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(s)
    add_data_args(s)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 "
                        "exposes the app to your network)")
    s.add_argument("--port", type=int_in(0, 65535, "port"), default=8000, help="port (default 8000; 0: any free)")
    s.add_argument("--max-upload-mb", type=float_in(0, 2048, lo_open=True, name="MB"),
                   default=10.0, metavar="MB",
                   help="largest upload accepted, above 0 and at most 2048 (default 10 MB)")
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable; "
                        "loopback names and the --host address are always allowed)")
    s.add_argument("--methods", action=ListAction, allowed=list_methods(), metavar="METHOD",
                   help="explanation methods drawn (default all: "
                        f"{', '.join(list_methods())})")
    s.add_argument("--embed-n", dest="tsne_n", type=positive_int, default=1000, metavar="N",
                   help="test images in the t-SNE map (default 1000)")
    renamed(s, "--embed-n", "--tsne-n")
    s.add_argument("--challenge-n", type=positive_int, default=200, metavar="N",
                   help="test images scored under the six challenges (default 200)")
    s.set_defaults(func=run_serve)


def run_report(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {args.out!r} must end in .html.")
    if out.is_dir():
        raise UsageError(f"--out {args.out!r} is a folder; give a file name ending in .html.")
    skip = set(args.skip) | (set(list_sections(costly=True)) if "costly" in args.skip else set())
    sections = tuple(s for s in (args.sections or SECTIONS) if s not in skip)
    if not sections:
        raise UsageError("every section is skipped; leave at least one out of --skip.")
    config = ReportConfig(
        data=args.data, sections=sections, n=args.n, wrong=args.wrong,
        explain_images=args.explain_images, faithfulness_images=args.faithfulness_images,
        class_images=args.class_images, class_steps=args.class_steps, judge=args.judge,
        seed=args.seed,
        batch_size=args.batch_size, metrics=args.metrics, model=str(args.model),
        neighbour_database=args.neighbour_database, patch_units=args.patch_units,
        challenge_images=args.challenge_images).resolved()
    if args.metrics and not Path(args.metrics).is_file():
        raise UsageError(f"--metrics {args.metrics!r} is not a file.")
    clf = open_model(args.model, args.weights, args.device)
    if args.judge and "classes" in sections:
        open_model(args.judge, None, args.device)  # a bad --judge fails now, not at the end
    # the file the model came from: the training section reads the metrics.jsonl beside it
    report = build_report(clf, args.data, config, progress=not args.quiet,
                          data_root=args.data_root, image_size=args.image_size,
                          model_path=args.model)
    if distributed.current().is_main:  # under torchrun every process has the same page
        path = report.save(out)
        print(f"wrote {path} ({len(sections)} sections, {report.seconds['total']:.0f} s)")
    return 0


def run_serve(args) -> int:
    config = ServeConfig(host=args.host, port=args.port, data=args.data,
                         max_upload_bytes=max(1, int(args.max_upload_mb * 2**20)),
                         methods=tuple(args.methods or ()), model=str(args.model),
                         tsne_n=args.tsne_n, challenge_n=args.challenge_n,
                         allowed_hosts=tuple(args.allowed_host)).resolved()
    if config.port == 0:
        config = replace(config, port=free_port(config.host))
    clf = open_model(args.model, args.weights, args.device)
    try:
        dataset, split = open_report_data(clf, args.data, data_root=args.data_root,
                                          image_size=args.image_size, progress=True)
    except ConvscopeError:
        if args.data:  # asked for and unusable: say so
            raise
        dataset, split = None, "test"  # e.g. an ImageNet model: uploads only
        print(f"no test images: {clf.meta.dataset or 'the model'}'s data cannot be loaded; "
              "pass --data NAME to browse some.", file=sys.stderr)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"convscope serve: http://{host}:{config.port}/ (Ctrl-C to stop)", flush=True)
    if config.host not in LOOPBACK:
        print(f"listening on {config.host}: anyone who can reach this machine can use the app; "
              f"it answers requests addressed to {', '.join(config.allowed_hosts)} "
              "(--allowed-host NAME adds a name).", file=sys.stderr)
    serve(clf, dataset, config, split=split)
    return 0

"""convscope report / serve: the picture of a model as one HTML page, or as a local web app."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

from convscope import distributed
from convscope.cli.common import add_command
from convscope.cli.options import ListAction, add_options, config_from, name_flags
from convscope.errors import ConvscopeError, UsageError
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
    sections = "\n".join(f"  {s.name:<13} {'(costly) ' if s.costly else ''}{s.title}"
                         for s in SECTIONS.values())
    p = add_command(
        sub, "report", "one self-contained HTML page: accuracy, mistakes, explanations, ...",
        "Write one HTML file (pictures embedded, no network needed to view it) "
                    "with the model's layer table, training curves, test accuracy, confusion "
                    "matrix, most confident mistakes, first-layer filters, feature and pixel "
                    "neighbours, a t-SNE map, maximally activating patches, attribution maps "
                    "and their faithfulness, class visualisations and the six challenges.",
        ("convscope report runs/demo/model.safetensors --out runs/demo/report.html",
         "convscope report runs/cifar/model.safetensors --skip costly --out quick.html"),
        before=f"sections (--sections / --skip):\n{sections}", data=True, run=run_report)
    p.add_argument("--out", required=True, metavar="HTML", help="the page to write (.html)")
    p.add_argument("--sections", action=ListAction, allowed=SECTIONS, metavar="NAME",
                   help="only these sections, in this order (default: all)")
    p.add_argument("--skip", action=ListAction, allowed=[*SECTIONS, "costly"], default=[],
                   metavar="NAME", help="leave these sections out; `costly` leaves out every "
                                        "costly one")
    add_options(p, ReportConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    s = add_command(
        sub, "serve", "a local web app: upload images, browse test images, explanations",
        "Start a local web app (offline, no CDN): drop in an image to see the top-5 and each "
        "explanation method's overlay, browse the test images. It listens on 127.0.0.1 (this "
        "machine only) unless --host says otherwise.",
        ("convscope serve runs/demo/model.safetensors --port 8000",), data=True)
    add_options(s, ServeConfig)
    s.set_defaults(func=partial(run_serve, parser=s))  # the app's errors name its flags


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
    config = config_from(ReportConfig, args, data=args.data, sections=sections,
                         model=str(args.model)).resolved()
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
        print(f"wrote {path} ({len(report.seconds) - 2} sections, {report.seconds['total']:.0f} s)")
    return 0


def run_serve(args, parser: argparse.ArgumentParser | None = None) -> int:
    config = config_from(ServeConfig, args, data=args.data, model=str(args.model)).resolved()
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
    serve(clf, dataset, config, split=split,
          words=partial(name_flags, parser=parser) if parser else None)
    return 0

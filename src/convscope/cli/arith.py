"""convscope conv / summary: ConvNet arithmetic for one layer, and the layer table of a model."""

from __future__ import annotations

import argparse
import sys

from convscope.cli.common import add_model_args, positive_int, print_json
from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.summary import summarize
from convscope.models.arithmetic import DoesNotFit, Volume, conv_arithmetic, pool_arithmetic


def _pad(text: str):
    if text in ("same", "valid"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, same or valid, got "
                                         f"{text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _depth(text: str):
    if text in ("auto", "all"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, auto or all, got "
                                         f"{text!r}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "conv", help="output volume and parameters of one conv or pool layer",
        description="The lecture's conv arithmetic: W2 = (W1 - F + 2P)/S + 1, D2 = K, "
                    "F*F*D1 + 1 parameters per filter, with the numbers filled in. A setting "
                    "that doesn't fit is an error showing the arithmetic.",
        epilog="examples:\n"
               "  convscope conv --input 32x32x3 --filters 10 --size 5 --stride 1 --pad 2\n"
               "  convscope conv --input 7x7x3 --filters 1 --size 3 --stride 3   # no fit\n"
               "  convscope conv --input 224x224x64 --pool --size 2\n"
               "  convscope conv --input 56x56x64 --filters 32 --size 1           # 1x1 conv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, metavar="WxHxD",
                   help="input volume W1xH1xD1, e.g. 32x32x3 (D1 defaults to 1: 7x7)")
    p.add_argument("--filters", "-K", type=positive_int, metavar="K",
                   help="number of filters K (convolution)")
    p.add_argument("--size", "-F", type=positive_int, required=True, metavar="F",
                   help="spatial extent F of the filters or pooling window")
    p.add_argument("--stride", "-S", type=positive_int, metavar="S",
                   help="stride S (default 1; pooling: F)")
    p.add_argument("--pad", "-P", type=_pad, default=0, metavar="P",
                   help="zero padding P, or same ((F-1)/2) / valid (0) (default 0)")
    p.add_argument("--dilation", type=positive_int, default=1, metavar="D",
                   help="dilation: the filter spans D(F-1)+1 (default 1)")
    p.add_argument("--pool", nargs="?", const="max", choices=["max", "avg"],
                   help="a pooling layer (max, or avg) instead of a convolution")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.set_defaults(func=run_conv)

    p = sub.add_parser(
        "summary", help="layer table: volumes, parameters, receptive fields, multiply-adds",
        description="One row per layer: name (as --layer accepts it), K/F/S/P, output volume "
                    "WxHxD, weights and biases, receptive field size and jump on the input, "
                    "multiply-adds; then totals. Volumes come from the formulas and are "
                    "cross-checked against a real forward pass.",
        epilog="MODEL is a convscope .safetensors model file, a model name (`convscope models`),\n"
               "spec:\"...\" or torchvision:NAME; torch.export .pt2 and TorchScript files only\n"
               "with --trust-code, because loading them runs code inside the file.\n\n"
               "examples:\n"
               "  convscope summary runs/demo/model.safetensors\n"
               "  convscope summary vgg16\n"
               "  convscope summary resnet18 --depth 2     # one row per BasicBlock\n"
               "  convscope summary spec:\"[(CONV3-32-RELU)*2-POOL2]*3-(FC256-RELU)*1-FC\" "
               "--input 32x32x3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, model_help="a model file, a model name (`convscope models`), "
                                 "spec:\"...\", torchvision:NAME; .pt2 / TorchScript only "
                                 "with --trust-code")
    p.add_argument("--input", metavar="WxHxD",
                   help="input volume (default: a model file's own; 224x224x3 for the ILSVRC "
                        "nets; 32x32x3 otherwise)")
    p.add_argument("--classes", type=positive_int, metavar="N",
                   help="classes when building a model by name (default 1000 for the ILSVRC "
                        "nets, 10 otherwise)")
    p.add_argument("--depth", type=_depth, default="auto", metavar="N|auto|all",
                   help="the level of the rows, as torchinfo's: N shows the modules N names "
                        "deep (layer1 = 1, layer1.0 = 2) with the layers inside summed up; "
                        "all: every layer; auto (default): blocks as the lecture draws them "
                        "(ResNet's layer1..layer4, Inception modules, dense blocks) and every "
                        "layer of a flat net")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--trust-code", action="store_true",
                   help="open .pt2 (torch.export) and TorchScript files, which runs code inside "
                        "the file (torch unpickles their entries and runs their programs): use "
                        "it only for files you made or trust")
    p.set_defaults(func=run_summary)


def run_conv(args) -> int:
    config = {k: v for k, v in vars(args).items() if k != "func"}
    try:
        r = _conv_result(args)
    except ConvscopeError as exc:
        if not args.json:
            raise
        # --json promises JSON on stdout: the error goes there as an object too (and its
        # sentence to stderr as usual), with the same exit status
        print_json({"config": config, "error": str(exc),
                    **({"fits": False} if isinstance(exc, DoesNotFit) else {})})
        print(f"convscope conv: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print_json({"config": config, **r.to_dict()})
    else:
        print(r.explain())
    return 0


def _conv_result(args):
    vol = Volume.parse(args.input, depth=1)  # the lecture writes 7x7 for a 7x7x1 input
    if args.pool:
        if args.filters:
            raise UsageError("--filters applies to convolutions; pooling keeps the depth.")
        if args.pad == "same":
            raise UsageError("pooling takes a whole-number --pad (usually 0).")
        r = pool_arithmetic(vol, args.size, args.stride, args.pad if args.pad != "valid" else 0,
                            args.dilation, mode=args.pool)
    else:
        if not args.filters:
            raise UsageError("a convolution needs --filters K; for a pooling layer pass --pool.")
        r = conv_arithmetic(vol, args.filters, args.size, args.stride or 1, args.pad,
                            args.dilation)
    return r


def run_summary(args) -> int:
    table = summarize(args.model, args.input, args.classes, trust_code=args.trust_code,
                      depth=args.depth, weights=args.weights, device=args.device)
    print_json(table.to_dict()) if args.json else print(table.format())
    return 0

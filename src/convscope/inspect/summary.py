"""The layer table: one row per layer with the lecture's quantities, cross-checked.

>>> table = layer_table(build_model("convnet", ModelInput(1, 10, (28, 28))), (1, 28, 28))
>>> print(table.format())                                    # doctest: +SKIP
>>> table.totals["params"], table.totals["macs"]             # doctest: +SKIP

Each row's output volume comes from the conv/pool formula and is compared with
what the forward pass produced; weights and biases come from the formulas
(F*F*D1*K + K for a conv, in*out + out for an FC layer, 2C for batch norm) and
their totals from the rows, so a wrong formula shows as a total that differs
from the model's ``sum(p.numel())``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from convscope.display import TextDisplay
from convscope.errors import UsageError
from convscope.inspect.receptive import LayerRecord, ReceptiveField, resolve_input, trace
from convscope.loading import open_network
from convscope.models.arithmetic import (
    LayerArithmetic,
    Volume,
    conv_arithmetic,
    exact_size,
    pool_arithmetic,
    uncovered,
)
from convscope.text import count

Pair = tuple[int, int]


@dataclass
class LayerRow:
    """One layer of the table; ``output`` is the forward pass's shape without the batch."""

    name: str
    type: str
    output: tuple[int, ...] | None
    weights: int = 0
    biases: int = 0
    macs: int = 0
    K: int | None = None
    F: Pair | None = None
    S: Pair | None = None
    P: Pair | None = None
    field: ReceptiveField | None = None
    arithmetic: LayerArithmetic | None = None
    #: "ok" when the formula's output equals the forward pass's, a message when not,
    #: None for layers without a formula
    check: str | None = None
    ran: bool = True
    #: how many layers of the full table this row sums up (0: a layer of its own)
    folded: int = 0

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def volume(self) -> str:
        return volume_text(self.output)

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.type, "K": self.K,
             "F": list(self.F) if self.F else None, "S": list(self.S) if self.S else None,
             "P": list(self.P) if self.P else None, "output": self.volume,
             "output_shape": list(self.output) if self.output else None,
             "weights": self.weights, "biases": self.biases, "params": self.params,
             "macs": self.macs, "receptive_field": self.field.to_dict() if self.field else None,
             "check": self.check, "ran": self.ran, "folded": self.folded}
        if self.arithmetic is not None:
            d["fits"] = self.arithmetic.fits
            d["formula"] = {"W2": self.arithmetic.axis_formula("W"),
                            "H2": self.arithmetic.axis_formula("H")}
        return d


def volume_text(shape) -> str:
    """(C, H, W) -> 'WxHxC' (the lecture's order); (F,) -> '1x1xF'."""
    if not shape:
        return "?"
    if len(shape) == 3:
        return f"{shape[2]}x{shape[1]}x{shape[0]}"
    if len(shape) == 1:
        return f"1x1x{shape[0]}"
    return "x".join(str(s) for s in shape)


@dataclass
class LayerTable(TextDisplay):
    """The rows, their totals, and what was summarised (``config``)."""

    rows: list[LayerRow]
    input: Volume
    model_params: int  # sum(p.numel()) over the model's distinct parameters
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: every leaf layer's row (the full table, ``depth="all"``); ``rows`` may fold blocks
    leaves: list[LayerRow] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        w = sum(r.weights for r in self.rows)
        b = sum(r.biases for r in self.rows)
        return {"weights": w, "biases": b, "params": w + b,
                "macs": sum(r.macs for r in self.rows), "model_params": self.model_params}

    @property
    def checked(self) -> list[LayerRow]:
        return [r for r in (self.leaves or self.rows) if r.check is not None]

    def row(self, name: str) -> LayerRow:
        """The row of a layer, or of a layer inside a folded block."""
        for r in [*self.rows, *self.leaves]:
            if r.name == name:
                return r
        raise UsageError(f"no layer {name!r} in the table.")

    def to_dict(self) -> dict:
        return {"config": self.config, "input": self.input.to_dict(),
                "layers": [r.to_dict() for r in self.rows], "totals": self.totals,
                "notes": self.notes}

    def format(self) -> str:
        return format_table(self)

    def _text(self) -> str:
        return self.format()


# ----------------------------------------------------------------- rows
def _direct_params(module: nn.Module) -> tuple[int, int]:
    """(weights, biases) counted from a module's own tensors (names ending in 'bias')."""
    w = b = 0
    for name, p in module.named_parameters(recurse=False):
        if name.endswith("bias"):
            b += p.numel()
        else:
            w += p.numel()
    return w, b


def _formula_params(module: nn.Module, arith: LayerArithmetic | None) -> tuple[int, int] | None:
    """(weights, biases) by the lecture's formulas, for the layers it has formulas for."""
    if arith is not None and arith.kind == "conv":
        return arith.weights, arith.biases
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features, (module.out_features
                                                          if module.bias is not None else 0)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        return module.num_features, module.num_features
    return None


def _arithmetic(rec: LayerRecord) -> LayerArithmetic | None:
    """The formula's view of the one conv or pool call a layer made, on the input the
    forward pass gave it (layers with several such calls, like blocks, get none)."""
    if len(rec.windows) != 1:
        return None
    w = rec.windows[0]
    vol = Volume.from_chw(w.input_shape)
    if w.kind == "conv":
        return conv_arithmetic(vol, w.filters, w.size, w.stride, w.pad, w.dilation, w.groups,
                               w.bias, strict=False)
    return pool_arithmetic(vol, w.size, w.stride, w.pad, w.dilation, w.ceil_mode, w.kind,
                           strict=False)


def _expected(module: nn.Module, rec: LayerRecord, arith: LayerArithmetic | None):
    """(formula's output shape, forward pass's), or None when the layer has no formula."""
    if arith is not None:
        return ((arith.output.depth, arith.output.height, arith.output.width),
                rec.windows[0].output_shape)
    got = tuple(rec.output_shape or ())
    if isinstance(module, nn.Linear) and rec.input_shape:
        return (*rec.input_shape[:-1], module.out_features), got
    if (isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
            and rec.input_shape and len(rec.input_shape) == 3):
        size = module.output_size
        size = (size, size) if isinstance(size, int) else size
        c, h, w = rec.input_shape
        return (c, size[0] or h, size[1] or w), got
    return None


def _row(rec: LayerRecord, field_: ReceptiveField | None, types: dict[str, str]) -> LayerRow:
    module = rec.module
    arith = _arithmetic(rec)
    kind = types.get(rec.name) or type(module).__name__
    row = LayerRow(rec.name or "(model)", kind, rec.output_shape, macs=rec.macs, field=field_,
                   arithmetic=arith)
    held = _direct_params(module)
    formula = _formula_params(module, arith)
    row.weights, row.biases = formula if formula is not None else held
    if formula is not None and formula != held:
        row.check = (f"the formula gives {count(sum(formula), 'parameter')} but the module "
                     f"holds {sum(held):,}")
    if arith is not None:
        row.F, row.S, row.P = arith.size, arith.stride, arith.pad
        row.K = arith.filters or None
    if isinstance(module, nn.Linear):
        row.K = module.out_features
    expected = _expected(module, rec, arith)
    if expected is not None and row.check is None:
        want, got = (tuple(e) for e in expected)
        row.check = "ok" if want == got else (
            f"the formula gives {volume_text(want)} but the forward pass gave "
            f"{volume_text(got)}")
    return row


def _is_row(name: str, module: nn.Module, rec: LayerRecord | None) -> bool:
    """Leaves, plus containers with their own parameters or multiply-adds."""
    own = sum(p.numel() for p in module.parameters(recurse=False))
    return not any(True for _ in module.children()) or own > 0 or (rec is not None and rec.macs)


def layer_table(model, input_shape: Sequence[int] | None = None, config: dict | None = None,
                types: dict[str, str] | None = None, depth: int | str = "all") -> LayerTable:
    """One row per layer of ``model`` for a (C, H, W) input (a Classifier: its own).

    ``depth`` is the level of the rows, as torchinfo's: ``"all"`` (every leaf layer),
    an int N (a module N names deep, ``layer1`` = 1, ``layer1.0`` = 2, is one row that sums
    up the layers inside it), or ``"auto"`` (see :func:`auto_folds`: ResNet's ``layer1`` ...
    ``layer4``, DenseNet's dense blocks are rows; a flat net keeps its leaves).

    Rows are the leaf modules in the order they ran (plus containers that own
    parameters or compute in their own ``forward``), named as ``--layer`` accepts.
    K/F/S/P and the volume formula come from the conv or pool call each layer
    made, so functional calls and exported programs get them too; ``types``
    names the layers' original classes where the module lost them (export).

    >>> t = layer_table(nn.Sequential(nn.Conv2d(3, 10, 5, padding=2)), (3, 32, 32))
    >>> t.rows[0].volume, t.rows[0].params
    ('32x32x10', 760)
    """
    net, shape = resolve_input(model, input_shape)
    t = trace(net, shape)
    types = types or {}
    rows = [_row(rec, t.field(name), types) for name, rec in t.layers.items()
            if _is_row(name, rec.module, rec)]
    for name, module in net.named_modules():  # layers the forward pass never called
        if name not in t.layers and _is_row(name, module, None):
            w, b = _direct_params(module)
            if w or b:
                rows.append(LayerRow(name, type(module).__name__, None, w, b, ran=False))
    unique = {id(p): p.numel() for p in net.parameters()}
    table = LayerTable(rows, Volume(shape[2], shape[1], shape[0]), sum(unique.values()),
                       dict(config or {}, input=str(Volume(shape[2], shape[1], shape[0]))))
    table.notes = _notes(table)
    folds = _folds(net, depth)
    table.leaves = table.rows
    if folds:
        table.rows = _fold_rows(table.rows, folds, t, types)
    table.config["depth"] = depth
    return table


# ----------------------------------------------------------------- depth
def _depth_of(name: str) -> int:
    return name.count(".") + 1 if name else 0


def _has_children(module: nn.Module) -> bool:
    return any(True for _ in module.children())


def auto_folds(net: nn.Module) -> list[str]:
    """The containers ``depth="auto"`` shows as one row each: those made of blocks, every
    child a container: a block class of its own (Inception's branches, MobileNet's inverted
    residual) or a Sequential of repeated blocks of one class (ResNet's ``layer1`` of
    BasicBlocks, DenseNet's dense blocks); the outermost such one wins, and the model itself
    is never folded, so a flat net (VGG, AlexNet, convnet, spec:) keeps one row per layer."""
    folds: list[str] = []
    for name, module in net.named_modules():
        if not name or any(name.startswith(f + ".") for f in folds):
            continue
        kids = list(module.children())
        generic = isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        if kids and all(_has_children(k) for k in kids) and (
                not generic or len({type(k) for k in kids}) == 1):
            folds.append(name)
    return folds


def _folds(net: nn.Module, depth: int | str) -> list[str]:
    """The containers shown as one row each at ``depth``."""
    if depth == "all":
        return []
    if depth == "auto":
        return auto_folds(net)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise UsageError(f"depth must be a whole number >= 1, auto or all, got {depth!r}.")
    return [name for name, module in net.named_modules()
            if _depth_of(name) == depth and _has_children(module)]


def _block_type(module: nn.Module, kind: str) -> str:
    """'2x BasicBlock' for a container of repeated blocks, else its class."""
    kids = list(module.children())
    if len(kids) > 1 and len({type(k) for k in kids}) == 1:
        return f"{len(kids)}x {type(kids[0]).__name__}"
    return kind


def _fold_rows(rows: list[LayerRow], folds: list[str], t, types: dict[str, str]) -> list[LayerRow]:
    """Each fold's rows summed into one, placed where its first layer was: output volume and
    receptive field of the container's output, weights, biases and multiply-adds added up."""
    owner = {}
    for r in rows:
        owner[r.name] = next((f for f in folds if r.name == f or r.name.startswith(f + ".")),
                             None)
    out: list[LayerRow] = []
    made: dict[str, LayerRow] = {}
    for r in rows:
        f = owner[r.name]
        if f is None:
            out.append(r)
            continue
        row = made.get(f)
        if row is None:
            rec = t.layers.get(f)
            module = rec.module if rec is not None else None
            kind = types.get(f) or (type(module).__name__ if module is not None else "?")
            row = LayerRow(f, _block_type(module, kind) if module is not None else kind,
                           rec.output_shape if rec is not None else None,
                           field=t.field(f), ran=rec is not None)
            made[f] = row
            out.append(row)
        row.weights += r.weights
        row.biases += r.biases
        row.macs += r.macs
        row.folded += 1
    return out


def _rounding_notes(name: str, a: LayerArithmetic) -> list[str]:
    """The formula of each axis whose division is not exact, and what torch drops."""
    notes, seen = [], set()
    for axis, i, n, what in (("W", 1, a.input.width, "columns"), ("H", 0, a.input.height, "rows")):
        f, s, p, d = a.size[i], a.stride[i], a.pad[i], a.dilation[i]
        if exact_size(n, f, s, p, d).is_integer() or (n, f, s, p, d) in seen:
            continue
        seen.add((n, f, s, p, d))
        lost = uncovered(n, f, s, p, d)
        what = what if lost > 1 else what[:-1]
        last = f"the last {lost} {what} of the padded input are" if lost > 1 else (
            f"the last {what} of the padded input is")
        extra = (f" ({last} never read)"
                 if lost and not a.ceil_mode else "")
        notes.append(f"{name}: {a.axis_formula(axis)}{extra}")
    return notes


def _notes(table: LayerTable) -> list[str]:
    notes = []
    for r in table.rows:
        a = r.arithmetic
        if a is not None and not a.fits:
            notes += _rounding_notes(r.name, a)
    bad = [r for r in table.rows if r.check not in (None, "ok")]
    for r in bad:
        notes.append(f"{r.name}: {r.check}")
    not_run = [r.name for r in table.rows if not r.ran]
    if not_run:
        notes.append(f"{count(len(not_run), 'layer')} not called as modules by the forward "
                     "pass, their parameters still counted ({', '.join(not_run[:6])}"
                     f"{', ...' if len(not_run) > 6 else ''}); a scripted TorchScript file "
                     "inlines its layers, a torch.export .pt2 keeps them")
    inexact = [r.name for r in table.rows if r.field is not None and not r.field.exact]
    if inexact:
        notes.append("~ receptive field over-estimated (an op convscope does not model, e.g. "
                     f"interpolation): {', '.join(inexact[:8])}"
                     + (" ..." if len(inexact) > 8 else ""))
    return notes


# ----------------------------------------------------------------- text
def _pair_text(p: Pair | None) -> str:
    if p is None:
        return ""
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _field_text(f: ReceptiveField | None) -> tuple[str, str]:
    if f is None:
        return "?", "?"
    size = ("~" if not f.exact else "") + _pair_text(f.size)
    return size, "-" if f.is_global else _pair_text(f.jump)


def _si(n: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(n)


#: the table's columns, and which of them are numbers (right-aligned)
COLUMNS = ("layer", "type", "K", "F", "S", "P", "output", "weights", "bias", "RF", "jump",
           "mult-adds")
NUMERIC_COLUMNS = frozenset({2, 3, 4, 5, 7, 8, 9, 10, 11})


def table_cells(table: LayerTable) -> tuple[list[list[str]], list[str]]:
    """``(rows, total)``: every row's cells as text, in :data:`COLUMNS` order (shared by the
    text table and the HTML report)."""
    lines = []
    for r in table.rows:
        rf, jump = _field_text(r.field)
        mark = "*" if r.arithmetic is not None and not r.arithmetic.fits else ""
        out = r.volume + mark if r.ran else "(not run)"
        lines.append([r.name, r.type, "" if r.K is None else str(r.K), _pair_text(r.F),
                      _pair_text(r.S), _pair_text(r.P), out, f"{r.weights:,}",
                      f"{r.biases:,}", rf, jump, f"{r.macs:,}"])
    t = table.totals
    total = ["total", "", "", "", "", "", "", f"{t['weights']:,}", f"{t['biases']:,}", "", "",
             f"{t['macs']:,}"]
    return lines, total


def format_table(table: LayerTable) -> str:
    """The table as text: rows, totals, then what the cross-checks found."""
    head = list(COLUMNS)
    lines, total = table_cells(table)
    widths = [max(len(row[i]) for row in [head, total, *lines]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.rjust(w) if i in NUMERIC_COLUMNS else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    title = f"{table.config.get('model', 'model')} on a {table.input} input (WxHxD)"
    out = [title, "", fmt(head), *(fmt(r) for r in lines), "-" * len(fmt(head)), fmt(total), ""]
    out += [f"{key:<15} {text}" for key, text in totals_lines(table)]
    if table.notes:
        out += ["", "notes (* : the division is not exact; torch rounds):"]
        out += [f"  {n}" for n in table.notes]
    return "\n".join(out)


def totals_lines(table: LayerTable) -> list[tuple[str, str]]:
    """What follows the rows, as (key, text): parameters, multiply-adds, the checks."""
    t = table.totals
    same = "equal to" if t["params"] == t["model_params"] else "but the model holds"
    checked = table.checked
    agree = sum(r.check == "ok" for r in checked)
    return [
        ("parameters", f"{t['params']:,} ({count(t['weights'], 'weight')} + "
                       f"{count(t['biases'], 'bias', 'biases')}), "
                       f"{same} sum(p.numel()) = {t['model_params']:,}"),
        ("multiply-adds", f"{t['macs']:,} per image ({_si(t['macs'])})"),
        ("volumes", f"the formula agrees with the forward pass for {agree} of "
                    f"{count(len(checked), 'conv/pool/FC layer')}"),
        ("RF", "receptive field size on the input and its jump (effective stride); - : global"),
        *_folded_line(table),
    ]


def _folded_line(table: LayerTable) -> list[tuple[str, str]]:
    folded = [r for r in table.rows if r.folded]
    if not folded:
        return []
    names = ", ".join(r.name for r in folded[:4]) + (", ..." if len(folded) > 4 else "")
    return [("blocks", f"{names}: each row sums up the layers inside it (output and RF of "
                       f"the block's output); depth {table.config.get('depth')}, "
                       "--depth all lists every layer")]


def summarize(target, input: str | Volume | None = None, classes: int | None = None,
              trust_code: bool = False, depth: int | str = "auto",
              weights: str | None = None, device: str = "cpu") -> LayerTable:
    """The layer table of a model file, a model name, ``spec:...`` or a module.

    ``depth`` is the level of the rows (see :func:`layer_table`): ``"auto"`` shows blocks
    as the lecture draws them (ResNet's ``layer1`` ... ``layer4``, Inception modules, dense
    blocks) and every layer of a flat net; ``"all"`` every leaf layer; N the modules N
    names deep.

    ``trust_code=True`` also opens ``.pt2`` and TorchScript files, which runs code inside the
    file (see :func:`convscope.loading.open_network`); without it they are refused.
    ``weights`` loads a torchvision network's weights (as everywhere); ``device`` is where
    the forward pass runs when a network cannot be traced without weights.

    >>> print(summarize("spec:[(CONV3-32-RELU)*2-POOL2]*3-FC", "32x32x3").format())  # doctest: +SKIP
    >>> summarize("resnet18").totals["params"]                                      # doctest: +SKIP
    11689512
    """
    def table(device: str) -> LayerTable:
        opened = open_network(target, input, classes, device=device, trust_code=trust_code,
                              weights=weights)
        vol = opened.input
        return layer_table(opened.module, (vol.depth, vol.height, vol.width),
                           config={"model": opened.name, "classes": classes},
                           types=opened.types, depth=depth)

    try:  # names build on the meta device: shapes without weights, instantly
        return table("meta")
    except NotImplementedError:  # an op without a meta kernel: build it for real
        return table("cpu" if device == "auto" else device)


__all__ = ["COLUMNS", "LayerRow", "LayerTable", "auto_folds", "layer_table", "summarize",
           "table_cells", "totals_lines"]

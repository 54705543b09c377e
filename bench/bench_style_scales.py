"""Style transfer: coarse-to-fine (--scales 2) against single-scale, time to reach a loss."""

from __future__ import annotations

import statistics

TITLE = "Style transfer: coarse-to-fine against single-scale optimisation"
DESCRIPTION = (
    "The default offline run (random multi-scale network, sample:chelsea in the style of "
    "sample:ihc) at full size, single-scale against `--scales 2`: the same number of steps "
    "at half size first, then at full size from the upsampled result. Both runs minimise the "
    "same full-size objective in the end, so their full-size losses compare directly; the "
    "time is wall-clock from the start (the coarse stage included) until the full-size loss "
    "first reaches the target, a multiple of what the single-scale run reaches at its end."
)

CONTENT = "sample:chelsea"
STYLE = "sample:ihc"


def time_to(history: list[dict], scale: int, target: float) -> float | None:
    """Seconds until the loss at ``scale`` first reaches ``target`` (None if never)."""
    for h in history:
        if h["scale"] == scale and h["total"] <= target:
            return h["seconds"]
    return None


def coarse_to_fine(size: int, steps: int, repeats: int) -> tuple[list[list], list[str]]:
    from convscope.style import stylize

    runs: dict[str, list] = {"single": [], "coarse-to-fine": []}
    for _ in range(repeats):  # alternate, so machine noise hits both alike
        for name, scales in (("single", 1), ("coarse-to-fine", 2)):
            r = stylize(CONTENT, STYLE, size=size, steps=steps, scales=scales, progress=False,
                        backbone="random-multiscale")
            runs[name].append(r.history)
    final = statistics.median(h[-1]["total"] for h in runs["single"])
    rows = []
    for factor in (2.0, 1.25, 1.0):
        target = final * factor
        row = [f"{factor:g} x single's final ({target:.3g})"]
        for name in runs:
            times = [time_to(h, size, target) for h in runs[name]]
            reached = [t for t in times if t is not None]
            row.append(round(statistics.median(reached), 1) if len(reached) == len(times)
                       else "not reached")
        rows.append(row)
    finals = {n: statistics.median(h[-1]["total"] for h in hs) for n, hs in runs.items()}
    notes = [f"coarse-to-fine at {size} px: {steps} steps at {size // 2} px, then {steps} at "
             f"{size} px; final full-size loss: single {finals['single']:.4g}, coarse-to-fine "
             f"{finals['coarse-to-fine']:.4g}; median of {repeats} alternating runs."]
    return rows, notes


def run(quick: bool = False) -> dict:
    size, steps, repeats = (48, 5, 1) if quick else (256, 40, 2)
    rows, notes = coarse_to_fine(size, steps, repeats)
    return {"columns": ["target loss", "single-scale s", "coarse-to-fine s"], "rows": rows,
            "notes": notes}

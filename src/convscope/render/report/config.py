"""The options of one report (:class:`ReportConfig`); the resolved values are embedded in
the page."""

from __future__ import annotations

from dataclasses import dataclass, replace

from convscope.errors import UsageError, unknown_name
from convscope.inspect.patches import DEFAULT_CHANNELS as PATCH_CHANNELS  # the first 16
from convscope.options import batch_option, option, positive_int, seed_option
from convscope.render.report.registry import SECTIONS


@dataclass(frozen=True)
class ReportConfig:
    """The options of one report; the resolved values are embedded in the page."""

    #: the dataset (None: the one the model was trained on); its test split is scored
    #: (the CLI's --data, shared with every command that reads a dataset)
    data: str | None = None
    #: the sections, in page order (empty: every registered section; the CLI's --sections
    #: and --skip choose them)
    sections: tuple[str, ...] = ()
    n: int = option(2000, "test images in the t-SNE map", flag="--embed-n",
                    type=positive_int, old=("--n",))
    wrong: int = option(24, "confidently wrong images shown", type=positive_int)
    explain_images: int = option(6, "images with attribution maps (every method)",
                                 flag="--explain-n", type=positive_int,
                                 old=("--explain-images",))
    faithfulness_images: int = option(40, "images scored for faithfulness",
                                      flag="--faithfulness-n", type=positive_int,
                                      old=("--faithfulness-images",))
    class_images: int = option(10, "classes visualised, the first N", flag="--class-n",
                               type=positive_int, old=("--class-images",))
    class_steps: int = option(150, "gradient-ascent steps per class image", type=positive_int)
    judge: str | None = option(None, "a second model trained apart on the same classes: its "
                                     "probability and top-1 on the class images are shown "
                                     "beside p", metavar="MODEL")
    #: query images of the nearest-neighbour section
    neighbour_queries: int = 8
    neighbour_database: int | None = option(10_000, "training images searched for neighbours "
                                                    "(a seeded sample)", type=positive_int)
    patch_units: int = option(8, f"channels shown with their top patches, at most "
                                 f"{PATCH_CHANNELS}", type=positive_int)
    challenge_images: int = option(300, "test images scored under the six challenges",
                                   flag="--challenge-n", type=positive_int,
                                   old=("--challenge-images",))
    seed: int = seed_option("which sample images")
    batch_size: int = batch_option()
    metrics: str | None = option(None, "training curves from this file (default: "
                                       "metrics.jsonl next to MODEL)", metavar="JSONL")
    #: what MODEL was on the command line (for the record)
    model: str = ""

    def resolved(self) -> ReportConfig:
        """A copy with the sections filled in and every value checked."""
        sections = tuple(dict.fromkeys(self.sections or SECTIONS))
        for name in sections:
            if name not in SECTIONS:
                raise unknown_name("report section", name, list(SECTIONS))
        for key in ("n", "wrong", "explain_images", "faithfulness_images", "class_images",
                    "class_steps", "neighbour_queries", "patch_units", "batch_size",
                    "challenge_images"):
            if getattr(self, key) < 1:
                raise UsageError(f"`{key}` must be at least 1, got {getattr(self, key)}.")
        if self.patch_units > PATCH_CHANNELS:
            raise UsageError(f"`patch_units` is at most {PATCH_CHANNELS} (the channels the "
                             f"patches search covers), got {self.patch_units}.")
        return replace(self, sections=sections)

"""The options of one report (:class:`ReportConfig`); the resolved values are embedded in
the page."""

from __future__ import annotations

from dataclasses import dataclass, replace

from convscope.errors import UsageError, unknown_name
from convscope.inspect.patches import DEFAULT_CHANNELS as PATCH_CHANNELS  # the first 16
from convscope.render.report.registry import SECTIONS


@dataclass(frozen=True)
class ReportConfig:
    """The options of one report; the resolved values are embedded in the page."""

    #: the dataset (None: the one the model was trained on); its test split is scored
    data: str | None = None
    #: the sections, in page order (empty: every registered section)
    sections: tuple[str, ...] = ()
    #: test images in the t-SNE map (a seeded sample)
    n: int = 2000
    #: most confidently wrong test images shown
    wrong: int = 24
    #: test images with attribution panels (every method)
    explain_images: int = 6
    #: test images scored by the faithfulness curves
    faithfulness_images: int = 40
    #: classes drawn by gradient ascent (the first ones, when the model has more)
    class_images: int = 10
    #: gradient-ascent steps per class image
    class_steps: int = 150
    #: a second model trained apart on the same classes; its probability and top-1 on the
    #: class images are shown beside p (None: the card says that none was given)
    judge: str | None = None
    #: query images of the nearest-neighbour section
    neighbour_queries: int = 8
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: channels shown with their maximally activating patches (of the first 16 searched)
    patch_units: int = 8
    #: test images scored under the six challenges (a seeded sample)
    challenge_images: int = 300
    seed: int = 0
    batch_size: int = 256
    #: training curves: this metrics.jsonl (None: the one next to the model file)
    metrics: str | None = None
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
                raise UsageError(f"{key.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, key)}.")
        if self.patch_units > PATCH_CHANNELS:
            raise UsageError(f"patch-units is at most {PATCH_CHANNELS} (the channels the "
                             f"patches search covers), got {self.patch_units}.")
        return replace(self, sections=sections)

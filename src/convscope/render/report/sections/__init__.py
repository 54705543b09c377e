"""The report's sections, one module each: a module here registers its section with
``@register_section`` and is imported below, found by :mod:`pkgutil`, so adding a section
is adding one module (no list to edit).

Page order: the built-in sections in :data:`ORDER`, then any other module, by name.
Sections never import each other; what two of them share lives in the context.
"""

import importlib
import pkgutil

#: the page order of the built-in sections' modules
ORDER = ("model", "training", "accuracy", "mistakes", "scores", "predictions", "worst",
         "look_inside", "filters", "neighbours", "tsne", "patches", "explanations",
         "faithfulness", "classes", "challenges")


def section_modules() -> list[str]:
    """The modules of this package, in page order."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


for _name in section_modules():
    importlib.import_module(f"{__name__}.{_name}")

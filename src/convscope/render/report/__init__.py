"""The report: one self-contained HTML page with the picture of a trained model.

Sections come from one registry, :data:`SECTIONS` (the CLI's ``--sections`` choices read
it); each is a module of :mod:`convscope.render.report.sections` with a small function that
turns a :class:`ReportContext` into its :class:`Card` (data: paragraphs, tables, figures,
tiles), with a title and one line that says what it shows and how to read it.  One
template, :mod:`convscope.render.report.page`, renders every card.  Costly sections are
flagged so users can leave them out.  Pictures are embedded as ``data:`` URIs and style is
inline, so the file opens anywhere without a network.  The resolved :class:`ReportConfig`
is embedded too, in ``<script type="application/json" id="convscope-config">``.

The report is written here, by hand, because no maintained library assembles one; every
number and picture in it comes from convscope's own library functions.

============  ===================================================================
``config``    :class:`ReportConfig`
``registry``  :class:`Section`, :func:`register_section`, :func:`list_sections`,
              :data:`SECTIONS`
``context``   :class:`ReportContext` (over the web app's Workbench), open_report_data
``card``      what a section returns: :class:`Card` and its parts
``page``      the one template: cards, the page, the embedded config
``build``     :func:`build_report`, :class:`Report`
``sections``  one module per section (adding a section is adding one module there)
============  ===================================================================

>>> r = build_report("runs/demo/model.safetensors", "mnist5k")   # doctest: +SKIP
>>> r.save("report.html")                                         # doctest: +SKIP
"""

from convscope.render.report import sections  # noqa: F401  (registers every section)
from convscope.render.report.build import Report, build_report, run_section
from convscope.render.report.card import (
    Bar,
    Big,
    Bullets,
    Card,
    Figure,
    Strong,
    Table,
    Text,
    Tile,
    Tiles,
    note,
    para,
)
from convscope.render.report.config import ReportConfig
from convscope.render.report.context import ReportContext, open_report_data
from convscope.render.report.page import CONFIG_ID, assemble, card_html, read_report_config
from convscope.render.report.registry import (
    SECTIONS,
    Section,
    list_sections,
    register_section,
)

__all__ = [
    "CONFIG_ID", "SECTIONS", "Bar", "Big", "Bullets", "Card", "Figure", "Report",
    "ReportConfig", "ReportContext", "Section", "Strong", "Table", "Text", "Tile", "Tiles",
    "assemble", "build_report", "card_html", "list_sections", "note", "open_report_data",
    "para", "read_report_config", "register_section", "run_section",
]

"""The HTML report: every section, pictures embedded and checked, numbers against the
library's own answers."""

from __future__ import annotations

import base64
import importlib
import io
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import convscope
from convscope.errors import UsageError
from convscope.render.report import (
    SECTIONS,
    Bar,
    Card,
    Figure,
    ReportConfig,
    Strong,
    Table,
    Tile,
    Tiles,
    build_report,
    card_html,
    list_sections,
    note,
    para,
    read_report_config,
    sections,
)
from tests.conftest import call_cli

SMALL = dict(n=200, wrong=6, explain_images=2, faithfulness_images=6, class_images=3,
             class_steps=20)


@pytest.fixture(scope="module")
def report(digits_model):
    return build_report(digits_model, progress=False, **SMALL)


def images_of(html: str) -> list[tuple[str, np.ndarray]]:
    """(alt, pixels) of every <img> in a page; every one must be an embedded PNG."""
    out = []
    for tag in re.findall(r"<img [^>]*>", html):
        src = re.search(r'src="([^"]*)"', tag).group(1)
        alt = re.search(r'alt="([^"]*)"', tag).group(1)
        assert src.startswith("data:image/png;base64,"), f"{alt}: {src[:60]}"
        png = base64.b64decode(src.split(",", 1)[1])
        out.append((alt, np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))))
    return out


def section_html(html: str, name: str) -> str:
    m = re.search(rf'<section class="card" id="sec-{name}".*?</section>', html, re.S)
    assert m, f"no section {name}"
    return m.group(0)


def test_every_section_is_there_with_its_title_and_how_to_read_it(report):
    assert list(report.config.sections) == list_sections(task="classify")
    for s in (SECTIONS[name] for name in list_sections(task="classify")):
        body = section_html(report.html, s.name)
        assert f"<h2>{s.title}" in body.replace("&#x27;", "'")
        assert '<p class="how">' in body and len(s.how) > 40
        assert "Not available" not in body, body[:500]
    assert report.seconds["total"] > 0 and set(list_sections(task="classify")) <= set(
        report.seconds)
    assert not (set(list_sections(task="detect")) - {"model", "training"}) & set(report.seconds)


def test_the_page_is_self_contained(report):
    html = report.html
    # no resource from anywhere: no http(s) URL, no external script, style or link
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "<link rel=\"stylesheet\"" not in html and "@import" not in html
    pictures = images_of(html)
    assert len(pictures) >= 10
    for alt, pixels in pictures:  # real pictures: not blank
        assert pixels.size and pixels.std() > 1, alt


def test_the_resolved_config_is_embedded(report, digits_model):
    cfg = read_report_config(report.html)
    assert cfg["job"] == "report" and cfg["sections"] == list_sections(task="classify")
    assert cfg["model"] == str(digits_model) and cfg["explain_images"] == 2
    assert cfg["test_images"] == len(convscope.load_dataset("digits").test_images)
    assert cfg["facts"]["top1"] == report.facts["top1"]


def test_accuracy_and_mistakes_agree_with_evaluate(report, digits_model):
    clf = convscope.load(digits_model)
    ds = convscope.load_dataset("digits")
    ev = clf.evaluate(ds)
    assert report.facts["top1"] == pytest.approx(ev.top1)
    assert report.facts["top5"] == pytest.approx(ev.top5)
    acc = section_html(report.html, "accuracy")
    assert f"top-1 {100 * ev.top1:.2f}%" in acc and f"top-5 {100 * ev.top5:.2f}%" in acc
    # mistakes: the count, and the most confident first
    proba = torch.from_numpy(clf.predict_proba(ds.test_images))
    conf, pred = proba.max(1)
    wrong = pred != ds.test_labels
    assert report.facts["wrong"] == int(wrong.sum())
    shown = re.findall(r"predicted (\S+) (0\.\d\d|1\.00)</figcaption>",
                       section_html(report.html, "mistakes"))
    assert len(shown) == min(SMALL["wrong"], int(wrong.sum())) > 0
    confs = [float(c) for _, c in shown]
    assert confs == sorted(confs, reverse=True)
    assert confs[0] == pytest.approx(float(conf[wrong].max()), abs=0.006)


def test_training_curves_come_from_metrics_jsonl(report, digits_model):
    body = section_html(report.html, "training")
    epochs = len((digits_model.parent / "metrics.jsonl").read_text().splitlines())
    assert f"{epochs} epochs" in body and "<img" in body


def test_report_command_draws_the_training_curves_beside_the_model(digits_model, tmp_path):
    """Issue 18: `convscope report` loaded the model and lost its path, so the training card
    said "No metrics.jsonl next to the model" with the file right there."""
    page = tmp_path / "report.html"
    call_cli("report", digits_model, "--out", page, "--sections", "training", "--quiet")
    body = section_html(page.read_text(), "training")
    assert "No metrics.jsonl" not in body and "without its file" not in body
    epochs = len((digits_model.parent / "metrics.jsonl").read_text().splitlines())
    assert f"{epochs} epochs; last: training loss" in body and "test top-1" in body
    (alt, pixels), = images_of(body)
    assert alt == "training curves" and pixels.std() > 1
    assert read_report_config(page.read_text())["facts"]["epochs"] == epochs


def test_sections_can_be_chosen_and_a_missing_metrics_file_is_said(digits_model, tmp_path):
    clf = convscope.load(digits_model)  # a Classifier: no file, so no metrics.jsonl to find
    r = build_report(clf, "digits", sections=("training", "mistakes"), progress=False, wrong=3)
    assert re.findall(r'data-section="(\w+)"', r.html) == ["training", "mistakes"]
    assert "given without its file" in section_html(r.html, "training")
    # given its file, a loaded Classifier gets its curves
    r = build_report(clf, "digits", sections=("training",), progress=False,
                     model_path=digits_model)
    assert "<img" in section_html(r.html, "training")
    # a model file with no metrics.jsonl beside it: the card says where it looked
    alone = clf.save(tmp_path / "alone" / "model.safetensors")
    r = build_report(alone, "digits", sections=("training",), progress=False)
    body = section_html(r.html, "training")
    assert "No metrics.jsonl next to the model" in body and str(alone.parent) in body
    with pytest.raises(UsageError, match="unknown report section 'nope'"):
        ReportConfig(sections=("nope",)).resolved()
    with pytest.raises(UsageError, match="at least 1"):
        build_report(clf, "digits", n=0, progress=False)


def test_a_section_that_does_not_apply_says_why(tmp_path):
    """A linear classifier has no convolutional layer: Grad-CAM cannot run, and the
    report says so in that section instead of failing."""
    convscope.train("digits", model="linear", epochs=1, out=str(tmp_path), progress=False,
                    verbose=False)
    r = build_report(tmp_path / "model.safetensors",
                     sections=("accuracy", "explanations", "training"), progress=False,
                     explain_images=2)
    body = section_html(r.html, "explanations")
    assert "Not available here" in body and "spatial" in body
    assert "Not available" not in section_html(r.html, "accuracy")
    assert "<p>1 epoch; last:" in section_html(r.html, "training")  # not "1 epochs"
    assert "trained     1 epoch," in call_cli("info", tmp_path / "model.safetensors").stdout
    out = call_cli("samples", "digits", "--n", "1", "--out", tmp_path / "one").stdout
    assert "wrote 1 test image of" in out


def test_an_rgb_model_of_another_size_gets_every_section(tmp_path):
    """Colour 12x12 images, 3 classes: every section applies (colour filter tiles included)."""
    data = "fake:size=12,channels=3,classes=3,n=120,test=60"
    convscope.train(data, model="convnet:width=8,fc=16", epochs=2, out=str(tmp_path),
                    progress=False, verbose=False)
    r = build_report(tmp_path / "model.safetensors", progress=False, **SMALL)
    for name in list_sections(task="classify"):
        assert "Not available" not in section_html(r.html, name), name
    assert r.facts["filters"]["colour"] and r.facts["tsne"]["n"] == 60
    assert len(re.findall(r'class="tile ', section_html(r.html, "classes"))) == 3
    for alt, pixels in images_of(r.html):
        assert pixels.std() > 1, alt


def test_report_command(digits_model, tmp_path):
    out = tmp_path / "sub" / "r.html"
    proc = call_cli("report", digits_model, "--out", out, "--sections", "model", "accuracy",
                    "mistakes", "--quiet")
    assert f"wrote {out}" in proc.stdout and "3 sections" in proc.stdout
    html = out.read_text()
    assert re.findall(r'data-section="(\w+)"', html) == ["model", "accuracy", "mistakes"]
    assert read_report_config(html)["sections"] == ["model", "accuracy", "mistakes"]
    proc = call_cli("report", digits_model, "--out", tmp_path / "r2.html", "--skip", "costly",
                    "--quiet")
    assert "Not available" not in (tmp_path / "r2.html").read_text()
    assert f"{len(list_sections(costly=False, task='classify'))} sections" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--out", "r.png"], "must end in .html"),
    (["--out", "r.html", "--skip", *list_sections()], "every section is skipped"),
    (["--out", "r.html", "--metrics", "nothing.jsonl"], "is not a file"),
])
def test_report_command_errors(digits_model, tmp_path, args, message):
    proc = call_cli("report", digits_model, *args, check=2)
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_class_images_card_shows_a_judge_or_says_there_is_none(digits_model, tmp_path):
    """Issue 18, defect 7: p alone rewards fooling images, so the card shows a second model's
    verdict beside it (report --judge MODEL), or says that none was given."""
    only = {**SMALL, "sections": ("classes",), "class_steps": 5}
    r = build_report(digits_model, progress=False, **only)
    assert "No judge was given" in section_html(r.html, "classes")
    convscope.train("digits", model="mlp", seed=1, epochs=2, out=str(tmp_path), progress=False,
                    verbose=False)
    judge = str(tmp_path / "model.safetensors")
    r = build_report(digits_model, progress=False, **only, judge=judge)
    body = section_html(r.html, "classes")
    rate = r.facts["class_images_judge_agreement"]
    assert f"agrees on {round(3 * rate)}/3 class images" in body and "No judge" not in body
    assert len(re.findall(r"<figcaption>\d p=\d\.\d\d judge \d\.\d\d</figcaption>", body)) == 3
    assert body.count('class="tile wrong"') == 3 - round(3 * rate)
    assert read_report_config(r.html)["judge"] == judge


def test_the_page_renders_a_card_from_the_data_a_section_returns():
    """A section returns data; the one template (page.py) writes the card's HTML, every
    piece of text escaped."""
    square = torch.from_numpy(np.kron(np.eye(2, dtype=np.uint8) * 250,
                                      np.ones((4, 4), np.uint8))[None])  # (1, 8, 8)
    card = Card([para("Seen on ", Strong("3 <images>"), "."),
                 Table(("class", "top-1", ""), [("cat", "90.0%", Bar(0.9)),
                                                ("dog & co", "12.5%", Bar(0.125))], (1,)),
                 note("A remark."),
                 Figure(square, "a checked square"),
                 Tiles([Tile(square, "tile one", "wrong")], 64)])
    html = card_html("made", "A hand-made card", "How to read it.", card)
    assert html.startswith('<section class="card" id="sec-made" data-section="made">')
    assert "<h2>A hand-made card</h2>" in html and '<p class="how">How to read it.</p>' in html
    assert "<p>Seen on <b>3 &lt;images&gt;</b>.</p>" in html
    assert "<th>class</th><th class=num>top-1</th>" in html
    assert "<td>cat</td><td class=num>90.0%</td>" in html and "<td>dog &amp; co</td>" in html
    assert 'style="width:180px"' in html and 'style="width:25px"' in html
    assert '<p class="note">A remark.</p>' in html
    assert [alt for alt, _ in images_of(html)] == ["a checked square", "tile one"]
    assert 'class="tile wrong"' in html and "<figcaption>tile one</figcaption>" in html
    with pytest.raises(TypeError, match="card part"):
        card_html("bad", "Bad", "A part that is not one.", Card(["<p>raw HTML</p>"]))


def test_every_section_module_registers_its_section():
    """sections/ is found, not listed: each module in it registers one section."""
    modules = sections.section_modules()
    assert modules[:3] == ["model", "training", "accuracy"]
    assert [s.fn.__module__ for s in SECTIONS.values()] == \
        [f"{sections.__name__}.{m}" for m in modules]


def test_a_section_added_in_one_new_module_is_listed_and_on_the_page(digits_model, tmp_path,
                                                                     monkeypatch):
    """Adding a section is one module with the decorator: it is in list_sections() (and so
    in the CLI's --sections choices) and its card is on the page."""
    (tmp_path / "extra_section.py").write_text(
        "from convscope.render.report import Card, Strong, para, register_section\n\n\n"
        "@register_section('extra', 'An extra card', 'Added by one module: nothing else "
        "was edited.')\n"
        "def extra_section(ctx):\n"
        "    return Card([para(f'{len(ctx.images)} test images, ', Strong('counted'))])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("extra_section")
        assert list_sections()[-1] == "extra" and "extra" in list_sections(costly=False)
        r = build_report(digits_model, sections=("model", "extra"), progress=False)
        body = section_html(r.html, "extra")
        n = len(convscope.load_dataset("digits").test_images)
        assert "<h2>An extra card</h2>" in body
        assert f"<p>{n} test images, <b>counted</b></p>" in body
        assert '<a href="#sec-extra">An extra card</a>' in r.html
        assert read_report_config(r.html)["sections"] == ["model", "extra"]
    finally:
        SECTIONS.pop("extra", None)
        sys.modules.pop("extra_section", None)

"""The web app's one page: inline HTML, style and script (no CDN; it works offline).

The script builds every element with ``textContent`` (class names and labels come from
users' data, so nothing is inserted as HTML) and talks to the JSON API in
:mod:`convscope.render.server`.  Uploads send the file itself as the request body.
"""

from __future__ import annotations

from convscope.render import html as H

EXTRA_CSS = """
nav.tabs { display: flex; gap: 4px; margin: 0 0 14px; border-bottom: 1px solid var(--line); }
nav.tabs button { border: 1px solid var(--line); border-bottom: none; background: #e9edf1;
                  padding: 7px 14px; border-radius: 6px 6px 0 0; cursor: pointer; font: inherit; }
nav.tabs button.active { background: var(--card); font-weight: 600; }
.view { display: none; } .view.active { display: block; }
#drop { border: 2px dashed #9aa5b1; border-radius: 8px; padding: 26px; text-align: center;
        background: #fbfcfd; cursor: pointer; }
#drop.over { border-color: var(--accent); background: #eef4ff; }
.result { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; margin: 14px 0; }
.result img.input { width: 168px; }
.overlays { display: flex; flex-wrap: wrap; gap: 12px; }
.overlays figure, .neigh figure { margin: 0; text-align: center; font-size: 12px; }
.overlays img { width: 140px; }
table.top5 td { padding: 3px 8px; }
.error { color: var(--bad); font-weight: 600; }
.status { color: var(--soft); min-height: 1.4em; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
.thumbs img { width: 56px; cursor: pointer; border: 2px solid transparent; }
.thumbs img:hover, .thumbs img.sel { border-color: var(--accent); }
.pager button { font: inherit; padding: 3px 10px; }
"""

BODY = """
<nav class="tabs" id="tabs">
  <button data-view="upload" class="active">Your image</button>
  <button data-view="browse">Test images</button>
</nav>
<section class="card view active" id="view-upload">
  <h2>Your image</h2>
  <p class="how">Drop an image here, or choose a file: the model's top-5 and what each
  explanation method says it looked at.</p>
  <div id="drop"><p>Drop an image here or <label><u>choose a file</u>
    <input type="file" id="file" accept="image/*" hidden></label></p></div>
  <p class="status" id="upload-status"></p>
  <div id="upload-result"></div>
</section>
<section class="card view" id="view-browse">
  <h2>Test images</h2>
  <p class="how">Click an image to see the model's answer and its explanations.</p>
  <div class="pager"><button id="prev">&larr; previous</button>
    <span id="page-info"></span> <button id="next">next &rarr;</button></div>
  <div class="thumbs" id="thumbs"></div>
  <p class="status" id="test-status"></p>
  <div id="test-result"></div>
</section>
"""

SCRIPT = r"""
const INFO = JSON.parse(document.getElementById('convscope-info').textContent);
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
async function api(url, options) {
  const r = await fetch(url, options);
  let body = null;
  try { body = await r.json(); } catch (e) { body = {error: r.statusText}; }
  if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
  return body;
}
function top5Table(top5, truth) {
  const rows = top5.map((t, i) => el('tr', {},
    el('td', {}, String(i + 1)), el('td', {}, t.label),
    el('td', {class: 'num'}, (100 * t.p).toFixed(1) + '%'),
    el('td', {}, el('span', {class: 'bar', style: 'width:' + Math.round(160 * t.p) + 'px'}))));
  const caption = truth === undefined ? 'top-5' : 'top-5 (true class: ' + truth + ')';
  return el('table', {class: 'top5', id: 'top5'},
    el('thead', {}, el('tr', {}, el('th', {colspan: '4'}, caption))), el('tbody', {}, ...rows));
}
function showResult(target, res) {
  const overlays = res.overlays.map(o => el('figure', {},
    el('img', {src: o.src, class: 'pix overlay', alt: o.method}), el('figcaption', {}, o.method)));
  target.replaceChildren(
    el('div', {class: 'result'},
      el('figure', {}, el('img', {src: res.image, class: 'pix input', alt: 'the image'}),
         el('figcaption', {}, 'as the model sees it')),
      top5Table(res.top5, res.label)),
    el('p', {class: 'how'}, 'Explanations of "' + res.target + '": occlusion (blue = masking ' +
       'there lowers the probability), saliency, guided backprop, Grad-CAM (bright = important).'),
    el('div', {class: 'overlays'}, ...overlays));
}
// ---- tabs
for (const b of document.querySelectorAll('#tabs button')) {
  b.addEventListener('click', () => {
    for (const x of document.querySelectorAll('#tabs button')) x.classList.toggle('active', x === b);
    for (const v of document.querySelectorAll('.view')) v.classList.toggle('active', v.id === 'view-' + b.dataset.view);
    if (b.dataset.view === 'browse' && !$('thumbs').childElementCount) loadPage(0);
  });
}
// ---- upload
async function upload(file) {
  $('upload-status').textContent = 'Looking at ' + file.name + ' ...';
  $('upload-status').className = 'status';
  if (file.size > INFO.max_upload_bytes) {
    $('upload-status').textContent = 'That file is larger than the limit of ' +
      INFO.max_upload_bytes.toLocaleString() + ' bytes.';
    $('upload-status').className = 'status error';
    return;
  }
  try {
    const res = await api('/api/upload', {method: 'POST', body: file,
                                          headers: {'Content-Type': 'application/octet-stream'}});
    showResult($('upload-result'), res);
    $('upload-status').textContent = file.name;
  } catch (e) {
    $('upload-status').textContent = e.message;
    $('upload-status').className = 'status error';
  }
}
$('file').addEventListener('change', (e) => { if (e.target.files.length) upload(e.target.files[0]); });
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});
// ---- test images
let pageStart = 0;
const PAGE = 60;
async function loadPage(start) {
  if (!INFO.test_images) { $('page-info').textContent = 'No test images: start the server with --data NAME.'; return; }
  pageStart = Math.max(0, Math.min(start, INFO.test_images - 1));
  const page = await api('/api/test?start=' + pageStart + '&count=' + PAGE);
  $('page-info').textContent = 'images ' + (page.start + 1) + '-' + (page.start + page.items.length) +
    ' of ' + page.total;
  $('thumbs').replaceChildren(...page.items.map(it => {
    const img = el('img', {src: '/api/test/' + it.index + '/image.png', class: 'pix',
                           alt: '#' + it.index + ' ' + it.label, title: '#' + it.index + ' ' + it.label});
    img.addEventListener('click', () => openTest(it.index, img));
    return img;
  }));
}
async function openTest(index, img) {
  for (const x of document.querySelectorAll('.thumbs img.sel')) x.classList.remove('sel');
  if (img) img.classList.add('sel');
  $('test-status').textContent = 'Looking at test image #' + index + ' ...';
  try {
    const res = await api('/api/test/' + index);
    showResult($('test-result'), res);
    $('test-status').textContent = 'Test image #' + index + ', labelled ' + res.label;
  } catch (e) { $('test-status').textContent = e.message; }
}
$('prev').addEventListener('click', () => loadPage(pageStart - PAGE));
$('next').addEventListener('click', () => { if (pageStart + PAGE < INFO.test_images) loadPage(pageStart + PAGE); });
"""


def index_html(info: dict) -> str:
    """The page, with the model's facts embedded for the script."""
    data = f"{info['data']} ({info['test_images']:,} test images)" if info["data"] else \
        "no test images"
    h, w = info["image_size"]
    subtitle = (f"{info['model']} · {len(info['classes'])} classes · {w}x{h}x{info['channels']}"
                f" · {data}")
    return H.page(f"convscope: {info['model']}", BODY + H.json_script(info, "convscope-info"),
                  subtitle, EXTRA_CSS, SCRIPT)

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
.drop { border: 2px dashed #9aa5b1; border-radius: 8px; padding: 26px; text-align: center;
        background: #fbfcfd; cursor: pointer; }
.drop.over { border-color: var(--accent); background: #eef4ff; }
p.alt-text { font-size: 20px; font-weight: 600; margin: 12px 0; padding: 10px 14px;
             background: #eef4ff; border-left: 4px solid var(--accent); border-radius: 4px; }
p.alt-text.small { font-size: 15px; font-weight: 500; padding: 6px 10px; }
.photo-row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.photo-row figure { margin: 0; flex: 1 1 480px; max-width: 760px; }
.photo-row figure img { width: 100%; height: auto; border: 1px solid var(--line); }
.photo-side { flex: 0 1 380px; }
.photo-side td { white-space: normal; }
.parts { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
         gap: 14px; }
.parts figure { margin: 0; font-size: 12px; }
.parts img { width: 100%; height: auto; border: 1px solid var(--line); }
.parts figcaption { color: var(--soft); margin-top: 3px; }
figcaption b { color: var(--ink); }
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
.neigh { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-end; margin: 4px 0 12px; }
.neigh img { width: 56px; }
.neigh figure.same img { outline: 3px solid var(--good); }
.neigh figure.other img { outline: 3px solid var(--bad); }
.controls { display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center; margin: 6px 0; }
.controls select, .controls input { font: inherit; }
#layer-views img { max-width: 100%; }
#tsne-box { position: relative; width: min(100%, 720px); }
#tsne-svg { width: 100%; height: auto; background: #fbfcfd; border: 1px solid var(--line); }
#tsne-svg circle { cursor: pointer; }
#tsne-svg circle:hover { stroke: #000; stroke-width: 0.004; }
#tsne-tip { position: absolute; display: none; pointer-events: none; background: #fff;
            border: 1px solid var(--line); border-radius: 6px; padding: 6px; font-size: 12px;
            box-shadow: 0 2px 8px rgba(0,0,0,.15); text-align: center; }
#tsne-tip img { width: 72px; display: block; margin: 0 auto 3px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; margin: 6px 0; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 5px;
            margin-right: 4px; }
"""

BODY = """
<nav class="tabs" id="tabs">
  <button data-view="upload" class="active">Your image</button>
  <button data-view="photo">Photo</button>
  <button data-view="browse">Test images</button>
  <button data-view="layers">Layers</button>
  <button data-view="tsne">t-SNE map</button>
  <button data-view="challenges">Challenges</button>
</nav>
<section class="card view active" id="view-upload">
  <h2>Your image</h2>
  <p class="how">Drop an image here, or choose a file: the model's top-5 and what each
  explanation method says it looked at.</p>
  <div id="drop" class="drop"><p>Drop an image here or <label><u>choose a file</u>
    <input type="file" id="file" accept="image/*" hidden></label></p></div>
  <p class="status" id="upload-status"></p>
  <div id="upload-result"></div>
</section>
<section class="card view" id="view-photo">
  <h2>Photo: faces, objects, pose, mask and description</h2>
  <p class="how">Drop a photo here, or choose a file: a face detector, an object detector, a
  pose network and a person mask look at it, and the description (the alt text of every
  image shown here) names what they found with enough confidence.</p>
  <div id="photo-drop" class="drop"><p>Drop a photo here or <label><u>choose a file</u>
    <input type="file" id="photo-file" accept="image/*" hidden></label></p></div>
  <p class="status" id="photo-status"></p>
  <div id="photo-result"></div>
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
<section class="card view" id="view-layers">
  <h2>Layers</h2>
  <p class="how">Choose a layer: its filters (the weights, for a convolution), and the
  activation maps of a test image or of your uploaded image at that layer.</p>
  <div class="controls">
    <label>layer <select id="layer-select"></select></label>
    <label>activations of <select id="act-source">
      <option value="test">test image</option><option value="upload">your image</option>
    </select></label>
    <label>test image # <input type="number" id="act-index" min="0" value="0"></label>
  </div>
  <p class="status" id="layer-status"></p>
  <div id="layer-views">
    <h3>Filters</h3><p class="how" id="filters-text"></p><div id="filters"></div>
    <h3>Activations</h3><p class="how" id="acts-text"></p><div id="acts"></div>
  </div>
</section>
<section class="card view" id="view-tsne">
  <h2>t-SNE map</h2>
  <p class="how">Test images placed by t-SNE of the network's features: nearby points are
  images the network sees as alike. Hover over a point to see the image; click to open it.</p>
  <p class="status" id="tsne-status"></p>
  <div class="legend" id="tsne-legend"></div>
  <div id="tsne-box"><svg id="tsne-svg" viewBox="-0.03 -0.03 1.06 1.06"></svg>
    <div id="tsne-tip"></div></div>
</section>
<section class="card view" id="view-challenges">
  <h2>The six challenges</h2>
  <p class="how">Top-1 accuracy on test images under the lecture's recognition challenges
  (viewpoint, illumination, deformation, occlusion, background clutter, intra-class
  variation), from severity 0 (the plain images) to 5, and one test image at every severity.
  <code>convscope challenges</code> gives every number.</p>
  <p class="status" id="challenges-status"></p>
  <div id="challenges-result"></div>
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
    el('img', {src: o.src, class: 'pix overlay', alt: o.method, 'data-method': o.method}),
    el('figcaption', {}, o.method)));
  target.replaceChildren(
    el('div', {class: 'result'},
      el('figure', {}, el('img', {src: res.image, class: 'pix input', alt: 'the image'}),
         el('figcaption', {}, 'as the model sees it')),
      top5Table(res.top5, res.label)),
    el('p', {class: 'how'}, 'Explanations of "' + res.target + '": occlusion (blue = masking ' +
       'there lowers the probability), saliency, guided backprop, Grad-CAM (bright = important).'),
    el('div', {class: 'overlays'}, ...overlays));
  if (res.neighbours) {
    const row = (title, items) => el('div', {},
      el('p', {class: 'how'}, title),
      el('div', {class: 'neigh'}, ...items.map(n => el('figure', {class: n.label === res.label ? 'same' : 'other'},
        el('img', {src: n.src, class: 'pix', alt: 'training image ' + n.index,
                   title: 'training image #' + n.index + ': ' + n.label}),
        el('figcaption', {}, n.label)))));
    target.append(
      row('Nearest training images by the network\'s features (' + res.neighbours.layer +
          '), of ' + res.neighbours.database.toLocaleString() +
          ' (green: same label, red: another):', res.neighbours.feature),
      row('Nearest by raw pixels:', res.neighbours.pixel));
  }
}
// ---- tabs
for (const b of document.querySelectorAll('#tabs button')) {
  b.addEventListener('click', () => {
    for (const x of document.querySelectorAll('#tabs button')) x.classList.toggle('active', x === b);
    for (const v of document.querySelectorAll('.view')) v.classList.toggle('active', v.id === 'view-' + b.dataset.view);
    if (b.dataset.view === 'browse' && !$('thumbs').childElementCount) loadPage(0);
    if (b.dataset.view === 'layers' && !$('layer-select').childElementCount) loadLayers();
    if (b.dataset.view === 'tsne' && !$('tsne-svg').childElementCount) loadTsne();
    if (b.dataset.view === 'challenges' && !$('challenges-result').childElementCount) loadChallenges();
  });
}
// ---- the six challenges
async function loadChallenges() {
  $('challenges-status').textContent = 'Scoring the test images under every challenge (once; a minute or two) ...';
  $('challenges-status').className = 'status';
  let r;
  try { r = await api('/api/challenges'); } catch (e) {
    $('challenges-status').textContent = e.message; $('challenges-status').className = 'status error'; return;
  }
  $('challenges-status').textContent = r.n.toLocaleString() + ' test images, clean top-1 ' +
    (100 * r.clean).toFixed(1) + '%; hurts most: ' + r.hardest;
  const rows = Object.entries(r.scores).map(([g, v]) => el('tr', {}, el('td', {}, g),
    el('td', {class: 'num'}, (100 * v).toFixed(1) + '%')));
  const notes = Object.entries(r.skipped).map(([k, v]) => el('p', {class: 'how'}, 'Skipped ' + k + ': ' + v + '.'));
  $('challenges-result').replaceChildren(
    el('table', {id: 'challenge-scores'}, el('thead', {}, el('tr', {}, el('th', {}, 'challenge'),
      el('th', {}, 'mean top-1, severities 1-5'))), el('tbody', {}, ...rows)),
    el('img', {src: r.curves, alt: 'top-1 accuracy against severity for each challenge', style: 'max-width:100%'}),
    el('img', {src: r.strips, alt: 'one test image at every severity of every challenge', style: 'max-width:100%'}),
    ...notes);
}
function showView(name) { document.querySelector('#tabs button[data-view=' + name + ']').click(); }
// ---- upload
let lastUpload = null, uploadRun = 0;
const OCTETS = {'Content-Type': 'application/octet-stream'};
function tooLarge(file, status) {
  if (file.size <= INFO.max_upload_bytes) return false;
  status.textContent = 'That file is larger than the limit of ' +
    INFO.max_upload_bytes.toLocaleString() + ' bytes.';
  status.className = 'status error';
  return true;
}
async function describeUpload(file, run) {
  // the description becomes the alt of the images shown (without the scene models'
  // packages the plain alt stays: the classifier's answer does not depend on them)
  if (INFO.scene_missing) return;
  let res;
  try { res = await api('/api/describe', {method: 'POST', body: file, headers: OCTETS}); }
  catch (e) { return; }
  if (run !== uploadRun) return;
  const box = $('upload-result');
  for (const img of box.querySelectorAll('img.input')) img.alt = res.text;
  for (const img of box.querySelectorAll('img.overlay')) img.alt = img.dataset.method + ': ' + res.text;
  box.prepend(el('p', {class: 'alt-text small', id: 'upload-alt',
                    title: 'the description of your image: the alt text of the images below'}, res.text));
}
async function upload(file) {
  const run = ++uploadRun;
  $('upload-status').textContent = 'Looking at ' + file.name + ' ...';
  $('upload-status').className = 'status';
  if (tooLarge(file, $('upload-status'))) return;
  try {
    const res = await api('/api/upload', {method: 'POST', body: file, headers: OCTETS});
    if (run !== uploadRun) return;
    lastUpload = file;
    showResult($('upload-result'), res);
    $('upload-status').textContent = file.name;
    describeUpload(file, run);
  } catch (e) {
    if (run !== uploadRun) return;
    $('upload-status').textContent = e.message;
    $('upload-status').className = 'status error';
  }
}
function dropZone(zone, input, handle) {
  input.addEventListener('change', (e) => { if (e.target.files.length) handle(e.target.files[0]); });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault(); zone.classList.remove('over');
    if (e.dataTransfer.files.length) handle(e.dataTransfer.files[0]);
  });
}
dropZone($('drop'), $('file'), upload);
// ---- a photo: faces, objects, pose, mask and its description
let photoRun = 0;
if (INFO.scene_missing) {
  $('photo-status').textContent = INFO.scene_missing;
  $('photo-status').className = 'status error';
}
async function uploadPhoto(file) {
  const run = ++photoRun, status = $('photo-status');
  status.className = 'status';
  if (tooLarge(file, status)) return;
  status.textContent = 'Looking at ' + file.name + ' ...';
  let res;
  try { res = await api('/api/scene', {method: 'POST', body: file, headers: OCTETS}); }
  catch (e) {
    if (run !== photoRun) return;
    $('photo-result').replaceChildren();
    status.textContent = e.message; status.className = 'status error';
    return;
  }
  if (run !== photoRun) return;
  status.textContent = file.name + ' (looked at ' + res.photo.width + 'x' + res.photo.height + ' px)';
  showPhoto($('photo-result'), res);
}
function showPhoto(target, res) {
  const pct = (p) => (100 * p).toFixed(0) + '%';
  const concepts = res.concepts.length
    ? el('table', {id: 'photo-concepts'},
        el('thead', {}, el('tr', {}, el('th', {}, 'concept'), el('th', {}, 'found by'),
                                 el('th', {class: 'num'}, 'score'))),
        el('tbody', {}, ...res.concepts.map(c => el('tr', {}, el('td', {}, c.words),
          el('td', {}, c.source), el('td', {class: 'num'}, c.score.toFixed(2))))))
    : el('p', {class: 'how', id: 'photo-concepts'}, 'No concept reached its threshold.');
  const t = res.thresholds;
  const side = [concepts, el('p', {class: 'how'}, 'A concept enters the description when ' +
    'its score reaches a threshold chosen for precision: faces ' + t.faces + ' (' +
    t['lone faces'] + ' with no person box round them), objects ' + t.objects +
    ', the ImageNet class ' + t.imagenet + '.')];
  if (res.imagenet_top.length) side.push(el('p', {class: 'how', id: 'photo-imagenet'},
    'The ImageNet classifier\'s top 3: ' +
    res.imagenet_top.map(x => x.label.split(',')[0] + ' ' + pct(x.probability)).join(', ') + '.'));
  const parts = res.parts.map(p => el('figure', {},
    el('img', {src: p.src, class: 'part', alt: p.name + ': ' + res.text}),
    el('figcaption', {}, el('b', {}, p.name), ': ' + p.summary)));
  target.replaceChildren(
    el('p', {class: 'alt-text', id: 'photo-text'}, res.text),
    el('div', {class: 'photo-row'},
      el('figure', {}, el('img', {src: res.picture, id: 'photo-picture', alt: res.text}),
         el('figcaption', {}, 'Everything together: the mask (green), the boxes, the pose and the description.')),
      el('div', {class: 'photo-side'}, ...side)),
    el('h3', {}, 'Each model on its own'),
    el('div', {class: 'parts', id: 'photo-parts'}, ...parts));
}
dropZone($('photo-drop'), $('photo-file'), uploadPhoto);
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


SCRIPT += r"""
// ---- layers: filters and activations
async function loadLayers() {
  const info = await api('/api/layers');
  const withOutput = info.layers.filter(l => l.output);
  $('layer-select').replaceChildren(...withOutput.map(l => el('option', {value: l.name},
    l.name + ' (' + l.type + ', ' + l.output + ')')));
  $('layer-select').value = info.defaults.filters;
  showLayer();
}
async function showPicture(box, text, url, options) {
  try {
    const r = await api(url, options);
    box.replaceChildren(el('img', {src: r.src, class: 'pix', alt: r.layer}));
    text.textContent = r.describe;
  } catch (e) { box.replaceChildren(); text.textContent = e.message; }
}
async function showLayer() {
  const layer = encodeURIComponent($('layer-select').value);
  $('layer-status').textContent = '';
  showPicture($('filters'), $('filters-text'), '/api/filters?layer=' + layer);
  if ($('act-source').value === 'upload') {
    if (!lastUpload) { $('acts').replaceChildren(); $('acts-text').textContent = 'Upload an image first (Your image).'; return; }
    showPicture($('acts'), $('acts-text'), '/api/activations?layer=' + layer,
                {method: 'POST', body: lastUpload, headers: {'Content-Type': 'application/octet-stream'}});
  } else {
    const index = Math.max(0, parseInt($('act-index').value || '0', 10));
    showPicture($('acts'), $('acts-text'), '/api/activations?layer=' + layer + '&index=' + index);
  }
}
for (const id of ['layer-select', 'act-source', 'act-index']) $(id).addEventListener('change', showLayer);
// ---- t-SNE map
async function loadTsne() {
  $('tsne-status').textContent = 'Computing the t-SNE map (once; a minute at most) ...';
  let map;
  try { map = await api('/api/tsne'); } catch (e) { $('tsne-status').textContent = e.message; return; }
  $('tsne-status').textContent = map.n.toLocaleString() + ' test images, features of ' + map.layer;
  $('tsne-legend').replaceChildren(...map.classes.map((c, i) => el('span', {},
    el('i', {style: 'background:' + map.colours[i % map.colours.length]}), c)));
  const NS = 'http://www.w3.org/2000/svg';
  const r = Math.max(0.003, Math.min(0.012, 0.2 / Math.sqrt(map.points.length)));
  const svg = $('tsne-svg'), tip = $('tsne-tip'), box = $('tsne-box');
  for (const [x, y, index, label] of map.points) {
    const c = document.createElementNS(NS, 'circle');
    c.setAttribute('cx', x); c.setAttribute('cy', 1 - y); c.setAttribute('r', r);
    c.setAttribute('fill', map.colours[label % map.colours.length]);
    c.dataset.index = index; c.dataset.label = map.classes[label];
    svg.append(c);
  }
  svg.addEventListener('mouseover', (e) => {
    const c = e.target.closest('circle'); if (!c) return;
    tip.replaceChildren(el('img', {src: '/api/test/' + c.dataset.index + '/image.png', class: 'pix',
                                   alt: 'test image ' + c.dataset.index}),
                        '#' + c.dataset.index + ' ' + c.dataset.label);
    const b = box.getBoundingClientRect(), p = c.getBoundingClientRect();
    tip.style.left = Math.min(p.left - b.left + 12, b.width - 100) + 'px';
    tip.style.top = (p.top - b.top + 12) + 'px';
    tip.style.display = 'block';
  });
  svg.addEventListener('mouseout', (e) => { if (e.target.closest('circle')) tip.style.display = 'none'; });
  svg.addEventListener('click', (e) => {
    const c = e.target.closest('circle'); if (!c) return;
    showView('browse');
    openTest(parseInt(c.dataset.index, 10));
  });
}
"""


def index_html(info: dict) -> str:
    """The page, with the model's facts embedded for the script."""
    data = f"{info['data']} ({info['test_images']:,} test images)" if info["data"] else \
        "no test images"
    h, w = info["image_size"]
    subtitle = (f"{info['architecture']} · {len(info['classes'])} classes · "
                f"{w}x{h}x{info['channels']} · {data}")
    return H.page(f"convscope: {info['model']}", BODY + H.json_script(info, "convscope-info"),
                  subtitle, EXTRA_CSS, SCRIPT)

"""The workbench: a model, the data it looks at, and the views of them, computed once.

The report (:mod:`convscope.render.report`) and the web app (:mod:`convscope.render.server`)
share it: what both show (the test images of the split scored, the t-SNE map, the six
challenges) is computed here, once; so is what the app's Photo view shows of an uploaded
photo (faces, objects, pose, person mask and the alt text built from them, by the scene
models, opened on first use).  It is plain Python, without HTTP: what cannot be
answered is a :class:`~convscope.errors.ConvscopeError` (:class:`NotFound` for a test image
or a view that is not there, :class:`OutOfRange` for a number outside what a view accepts,
:class:`~convscope.errors.ImageError` for a bad upload), which the web app turns into an
HTTP status.  Model work runs under ``lock``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.display import draw
from convscope.errors import ConvscopeError, UsageError
from convscope.images import load_image, upright_size
from convscope.inspect.attribution import METHODS, explain_many
from convscope.inspect.challenges import Challenges, challenges
from convscope.inspect.embedding import Embedding, embed
from convscope.inspect.features import extract, model_images
from convscope.inspect.filters import activations, filters
from convscope.inspect.layers import choose_layer, list_layers
from convscope.inspect.neighbors import knn
from convscope.inspect.sources import sample
from convscope.models.coco import plural
from convscope.models.pretrained import pretrained_entry
from convscope.render import html as H
from convscope.render.attribution import overlay
from convscope.render.figures import figure_png, image_png
from convscope.render.views import class_colours
from convscope.scene.describe import DescribeConfig, Describer
from convscope.scene.models import MAX_SIDE, open_scene
from convscope.text import count

#: the pose and person-mask networks of the Photo view
POSE_NETWORK, MASK_NETWORK = "movenet-lightning", "selfie-segmentation"
#: the longer side of each part's picture, at most (the combined picture keeps the
#: drawing's own size, at most 1280 px)
PART_SIDE = 640


class NotFound(ConvscopeError):
    """What was asked for is not there: a test image past the last, or a view of test
    images where there are none."""


class OutOfRange(UsageError):
    """A number outside what a view accepts (a page of test images too long)."""


@dataclass
class Workbench:
    """The model, its test images and every view of them (plain Python: the report, the
    app and the tests call it directly).  Model work runs under ``lock``."""

    clf: Classifier
    source: ImageDataset | None   # the dataset as loaded (its training split: neighbours)
    #: the split looked at: "test" (the model's own data) or "all" (any other)
    split: str = "test"
    #: explanation methods drawn for every image
    methods: tuple[str, ...] = tuple(METHODS)
    seed: int = 0
    #: test images in the t-SNE map (a seeded sample)
    tsne_n: int = 1000
    #: test images scored under the six challenges (a seeded sample)
    challenge_n: int = 200
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: neighbours shown per image
    k: int = 6
    batch_size: int = 256
    #: most pixels one upload may decode to (a JPEG counts at its reduced draft size)
    max_upload_pixels: int = 16_000_000
    #: what MODEL was on the command line
    model: str = ""
    #: the models and thresholds of the Photo view's description (alt text)
    describe_config: DescribeConfig = field(default_factory=DescribeConfig)
    lock: threading.RLock = field(default_factory=threading.RLock)
    cache: dict = field(default_factory=dict)  # computed once, under the lock

    @cached_property
    def dataset(self) -> ImageDataset | None:
        """The dataset with the split looked at as its test images."""
        return None if self.source is None else self.source.as_evaluation_split(self.split)

    def once(self, key, compute):
        """``compute()`` the first time ``key`` is asked for, under the lock."""
        with self.lock:
            if key not in self.cache:
                self.cache[key] = compute()
            return self.cache[key]

    def view_of_test_images(self, key, compute, least: int, what: str) -> dict:
        """A view over the test images, computed once: NotFound with one sentence when there
        are fewer than ``least`` of them."""
        if self.test_count < least:
            raise NotFound(f"{what} needs test images; start the server with `data` naming a "
                           "dataset.")
        return self.once(key, compute)

    # ---- inputs
    def decode(self, data: bytes) -> torch.Tensor:
        """Uploaded bytes -> a uint8 (1, C, H, W) batch at the model's size; a bad image is
        an ImageError with the reader's own sentence (its ``kind`` says which)."""
        return torch.from_numpy(load_image(data, self.clf.image_size, self.clf.channels,
                                           limit=self.max_upload_pixels))[None]

    def decode_photo(self, data: bytes) -> np.ndarray:
        """Uploaded bytes -> the photo upright as (H, W, 3) uint8, its longer side at most
        ``MAX_SIDE`` (a JPEG decoded reduced, so a large photo stays under
        ``max_upload_pixels``); a bad image is an ImageError with the reader's sentence."""
        w, h = upright_size(data)
        s = min(1.0, MAX_SIDE / max(w, h))
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return load_image(data, size, 3, limit=self.max_upload_pixels).transpose(1, 2, 0)

    def test_image(self, index: int) -> torch.Tensor:
        """Test image ``index`` as uint8 (C, H, W) (its dataset's own size)."""
        n = self.test_count
        if not 0 <= index < n:
            raise NotFound(f"there is no test image {index}; indices are 0-{n - 1}." if n
                           else "this server has no test images; start it with `data` naming a "
                           "dataset.")
        return self.dataset.test_images[index]

    @property
    def test_count(self) -> int:
        return 0 if self.dataset is None else len(self.dataset.test_images)

    # ---- answers
    def info(self) -> dict:
        meta = self.clf.meta
        return {"model": H.model_label(self.model or meta.model),
                "architecture": meta.model,
                "classes": self.clf.classes, "image_size": list(meta.image_size),
                "channels": meta.channels, "methods": list(self.methods),
                "data": None if self.dataset is None else self.dataset.name,
                "test_images": self.test_count, "scene_missing": self.scene_missing()}

    def test_page(self, start: int, count: int) -> dict:
        n = self.test_count
        if start < 0 or count < 1 or count > 500:
            raise OutOfRange("start must be at least 0 and count 1-500.")
        stop = min(n, start + count)
        labels = self.dataset.test_labels if n else torch.empty(0)
        return {"total": n, "start": start,
                "items": [{"index": i, "label": self.dataset.classes[int(labels[i])]}
                          for i in range(start, stop)]}

    def analyze(self, batch: torch.Tensor) -> dict:
        """Top-5 and one overlay per method for a uint8 (1, C, H, W) image."""
        with self.lock:
            results = explain_many(self.clf, batch, list(self.methods))
        first = next(iter(results.values()))
        probs = first.probs[0]
        p, idx = probs.topk(min(5, len(probs)))
        return {
            "image": H.data_uri(image_png(first.images[0])),
            "top5": [{"label": self.clf.classes[int(i)], "p": round(float(v), 5)}
                     for v, i in zip(p, idx)],
            "target": self.clf.classes[int(first.targets[0])],
            "overlays": [{"method": m, "src": H.data_uri(image_png(overlay(a, 0)))}
                         for m, a in results.items()],
        }

    def test_item(self, index: int) -> dict:
        image = self.test_image(index)
        out = self.analyze(self.clf.as_batch(image[None]))
        out.update(index=index, label=self.dataset.classes[int(self.dataset.test_labels[index])],
                   neighbours=self.neighbours(image))
        return out

    # ---- a photo: faces, objects, pose, person mask and its description
    def scene_missing(self) -> str | None:
        """None when every network of the Photo view can open, else the sentence that
        says which package to install (nothing is opened to find out)."""
        c = self.describe_config
        names = [c.faces, c.objects, POSE_NETWORK, MASK_NETWORK]
        if c.classifier.lower() != "none":
            names.append(c.classifier)
        for name in names:
            entry = pretrained_entry(name)
            if entry is None:  # a torchvision classifier: opens with torchvision itself
                continue
            try:
                entry.require()
            except ConvscopeError as exc:
                return str(exc)
        return None

    def describer(self) -> Describer:
        """The face and object detectors and the ImageNet classifier the alt text is built
        from, opened once (one sentence with the pip command when a package is missing)."""
        return self.once("describer", lambda: Describer(self.describe_config, self.clf.device))

    def scene_model(self, name: str):
        """The scene network ``name`` (the pose or the person-mask network), opened once."""
        return self.once(("scene", name), lambda: open_scene(name, device=self.clf.device))

    def describe(self, photo) -> dict:
        """The alt text of a photo (bytes or a decoded (H, W, 3) array) and its concepts."""
        if isinstance(photo, bytes):
            photo = self.decode_photo(photo)
        with self.lock:
            alt = self.describer()(photo)
        out = alt.to_dict()
        out.pop("image", None)
        return out

    def scene(self, photo) -> dict:
        """Everything the scene models find in a photo (bytes or a decoded (H, W, 3)
        array): the alt text and its concepts, the faces, objects, pose and person mask as
        JSON (in the pixels of the photo as looked at, ``photo``), and PNG data URIs of
        all of it on one picture and of each part on its own."""
        if isinstance(photo, bytes):
            photo = self.decode_photo(photo)
        with self.lock:
            describer = self.describer()
            pose_net, mask_net = self.scene_model(POSE_NETWORK), self.scene_model(MASK_NETWORK)
            alt = describer(photo)
            poses, mask = pose_net(photo), mask_net(photo)
        faces, objects = alt.faces, alt.objects
        combined = draw("scene_image", photo, faces=faces, objects=objects, poses=poses,
                        mask=mask, text=alt.text)
        seen = int((poses.scores >= poses.min_score).sum())
        found = ", ".join(count(n, label, plural(label)) for label, n in objects.counts().items())
        parts = [
            ("faces", faces, f"{count(len(faces), 'face')} ({faces.model}, score >= "
                             f"{faces.min_score:g})"),
            ("objects", objects, f"{found or 'no objects'} ({objects.model}, score >= "
                                 f"{objects.min_score:g})"),
            ("pose", poses, f"{seen} of {poses.scores.size} keypoints ({poses.model}, score "
                            f">= {poses.min_score:g})"),
            ("mask", mask, f"the person mask covers {mask.coverage:.0%} of the photo "
                           f"({mask.model}, probability >= {mask.threshold:g})"),
        ]
        described = alt.to_dict()
        h, w = photo.shape[:2]
        return {
            "text": alt.text, "concepts": described["concepts"],
            "thresholds": described["thresholds"], "imagenet_top": described["imagenet_top"],
            "photo": {"width": w, "height": h},
            "faces": faces.to_dict(), "objects": objects.to_dict(),
            "pose": poses.to_dict(), "mask": mask.to_dict(),
            "picture": H.data_uri(image_png(combined)),
            "parts": [{"name": name, "summary": summary,
                       "src": H.data_uri(image_png(_at_most(result.render(), PART_SIDE)))}
                      for name, result, summary in parts],
        }

    # ---- neighbours
    def _database(self) -> dict:
        """The training images searched (a seeded sample) and their features, once."""
        ds = self.source
        idx = sample(len(ds.train_images), self.neighbour_database, self.seed)
        images = ds.train_images[idx]
        layer = choose_layer(self.clf, None, "neighbors")
        feats = extract(self.clf, model_images(self.clf, images), [layer], reduction="flatten",
                        progress=False)[layer].flatten(1)
        return {"indices": idx, "images": images, "labels": ds.train_labels[idx],
                "features": feats, "layer": layer}

    def neighbours(self, image: torch.Tensor) -> dict | None:
        """The k nearest training images of a test image (C, H, W): by the network's
        features and by raw pixels, nearest first."""
        if self.source is None or len(self.source.train_images) == 0:
            return None
        with self.lock:
            db = self.once("database", self._database)
            q = extract(self.clf, model_images(self.clf, image[None]), [db["layer"]],
                        reduction="flatten", progress=False)[db["layer"]].flatten(1)
        k = min(self.k, len(db["images"]))

        def found(indices, distances):
            return [{"index": int(db["indices"][i]), "distance": round(float(d), 4),
                     "label": self.source.classes[int(db["labels"][i])],
                     "src": H.data_uri(image_png(db["images"][i]))}
                    for i, d in zip(indices[0], distances[0])]

        fd, fi = knn(q, db["features"], k)
        pd, pi = knn(image[None], db["images"], k)
        return {"layer": db["layer"], "database": len(db["images"]),
                "feature": found(fi, fd), "pixel": found(pi, pd)}

    # ---- layers: filters and activations
    def layers(self) -> dict:
        return self.once("layers", lambda: list_layers(self.clf).to_dict())

    def filters(self, layer: str | None) -> dict:
        with self.lock:
            f = filters(self.clf, layer=layer or None)
            png = image_png(f.render())
        return {"layer": f.layer, "describe": f.describe(), "src": H.data_uri(png)}

    def activations(self, layer: str | None, batch: torch.Tensor) -> dict:
        with self.lock:
            a = activations(self.clf, batch, layer=layer or None)
            png = image_png(a.render())
        return {"layer": a.layer, "describe": a.describe(), "src": H.data_uri(png)}

    # ---- the t-SNE map
    def embedding(self) -> Embedding:
        """The t-SNE map of a seeded sample of ``tsne_n`` test images (an Embedding), once:
        the report draws it, :meth:`tsne` sends its points."""
        return self.once("embedding", lambda: embed(
            self.clf, self.source, split=self.split, seed=self.seed,
            n=min(self.tsne_n, self.test_count)))

    def _tsne_points(self) -> dict:
        from matplotlib.colors import to_hex  # heavy optional dependency

        e = self.embedding()
        xy = e.coords - e.coords.min(axis=0)
        xy = xy / max(float(xy.max()), 1e-12)                     # in [0, 1]
        colours = [to_hex(c) for c in class_colours(len(self.dataset.classes))]
        return {"layer": e.config.layer, "n": e.config.n, "classes": self.dataset.classes,
                "colours": colours,
                "points": [[round(float(x), 4), round(float(y), 4), int(i), int(label)]
                           for (x, y), i, label in zip(xy, e.indices, e.labels)]}

    def tsne(self) -> dict:
        return self.view_of_test_images("tsne", self._tsne_points, 4, "the t-SNE map")

    # ---- the six challenges
    def challenge_result(self) -> Challenges:
        """Top-1 of a seeded sample of ``challenge_n`` test images under the six
        challenges, once: the report draws it, :meth:`challenges` sends it."""
        return self.once("challenge_result", lambda: challenges(
            self.clf, self.source, split=self.split, seed=self.seed,
            n=min(self.challenge_n, self.test_count), batch_size=self.batch_size))

    def _challenges(self) -> dict:
        r = self.challenge_result()
        m = r.main
        return {"n": r.n, "measure": r.measure, "clean": m.clean, "hardest": m.hardest(),
                "scores": m.group_scores(), "skipped": r.skipped,
                "curves": H.data_uri(figure_png(r.figure())),
                "strips": H.data_uri(figure_png(r.strips_figure()))}

    def challenges(self) -> dict:
        return self.view_of_test_images("challenges", self._challenges, 2,
                                        "the six challenges' view")

    def test_png(self, index: int) -> bytes:
        return image_png(self.test_image(index))


def _at_most(picture: np.ndarray, side: int) -> np.ndarray:
    """A picture with its longer side at most ``side`` px."""
    h, w = picture.shape[:2]
    if max(h, w) <= side:
        return picture
    s = side / max(h, w)
    return np.asarray(Image.fromarray(picture).resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))

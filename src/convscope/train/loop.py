"""The training loop: data in memory as uint8, batches augmented on tensors,
evaluation after every epoch, and three files written to the run's folder."""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from convscope import distributed
from convscope.classifier import Classifier, resolve_device
from convscope.data import ImageDataset
from convscope.data.annotated import AnnotatedDataset
from convscope.errors import ConvscopeError
from convscope.evaluate import evaluate_logits, sharded_logits
from convscope.fileio import append_text, remove_stale_temps, write_error, write_text_atomic
from convscope.modelfile import ModelMeta
from convscope.models import ModelInput, build_model, canonical_name, parse_model_name
from convscope.models.zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    freeze_backbone,
    keep_frozen,
    keep_norm_statistics,
)
from convscope.progress import progress_bar
from convscope.train.annotated import AnnotatedObjective
from convscope.train.augment import alternating_flip, augment_batch, resolve_augment
from convscope.train.checkpoint import (
    CHECKPOINT_NAME,
    LoopState,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from convscope.train.config import TrainConfig
from convscope.train.optim import make_optimizer

#: the files of a run, and the folder inside ``--out`` where a run started over an earlier
#: one writes them until it finishes (the earlier run's files stay intact until then)
RUN_FILES = ("config.json", "metrics.jsonl", CHECKPOINT_NAME, "model.safetensors")
PENDING = ".pending"


def run_folder(out: str | Path) -> Path:
    """Where the newest run in ``out`` keeps its files: ``out/.pending`` while a run that
    replaces an earlier one is unfinished, else ``out``."""
    out = Path(out)
    return out / PENDING if (out / PENDING / "config.json").is_file() else out


def make_classifier(dataset: ImageDataset, config: TrainConfig, device: torch.device) -> Classifier:
    """Build the (seeded) network and the metadata that describes it."""
    entry, options = parse_model_name(config.model)
    inp = ModelInput(dataset.channels, dataset.num_classes, dataset.image_size)
    torch.manual_seed(config.seed)
    model = build_model(config.model, inp, weights=config.weights)
    mean, std = dataset.normalization()
    if config.weights and dataset.channels == 3:  # pretrained filters expect their statistics
        mean, std = entry.weight_stats or (IMAGENET_MEAN, IMAGENET_STD)
    meta = ModelMeta(
        model=entry.name,
        options=options,
        classes=list(dataset.classes),
        channels=dataset.channels,
        image_size=list(dataset.image_size),
        input_size=list(entry.input_size(dataset.image_size)),
        mean=list(mean),
        std=list(std),
        dataset=dataset.name,
    )
    return Classifier(model, meta, device)


#: nets with at least this many conv/linear layers get ``max_grad_norm`` DEEP_MAX_GRAD_NORM
#: unless one is given: ILSVRC-depth nets otherwise reach NaN within a few steps on small
#: batches (issue 18), while the shallow ones keep their unclipped figures
DEEP_LAYERS = 20
DEEP_MAX_GRAD_NORM = 2.0


def weight_layers(model: nn.Module) -> int:
    """How many conv and linear layers ``model`` has: its depth, for the defaults."""
    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


def init_from_data(model: nn.Module, dataset: ImageDataset, preprocess, limit: int = 5000) -> None:
    """Data-dependent initialisation, for models that define ``init_from_data(images)``
    (fastnet's whitening layer): called with up to ``limit`` normalised training images."""
    init = getattr(model, "init_from_data", None)
    if callable(init):
        x = dataset.train_images[:limit]
        with torch.no_grad():
            init(torch.cat([preprocess(x[i : i + 500]) for i in range(0, len(x), 500)]).cpu())


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed precision for CUDA (bf16 by default); full precision on the CPU."""
    if config.amp == "off" or (config.amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if config.amp == "fp16" else torch.bfloat16


class ClassifyObjective:
    """Classification: a Classifier, batches of whole images (tensor augmentation), cross
    entropy with label smoothing, top-1 and top-5 on the test split."""

    #: whether a training step counts correct answers (shown as train accuracy)
    has_accuracy = True
    #: fine-tuning keeps the pretrained batch-norm statistics (a small folder's batches
    #: would replace them with noisy ones)
    keeps_pretrained_norms = True

    def __init__(self, dataset: ImageDataset, config: TrainConfig, device: torch.device):
        self.dataset, self.device, self.config = dataset, device, config
        self.n = len(dataset.train_labels)
        self.augment = resolve_augment(config.augment, dataset.natural)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        #: altflip-translate's fixed random side of each image (set by the trainer)
        self.flip_bits: torch.Tensor | None = None
        self.clf: Classifier | None = None

    @property
    def test_count(self) -> int:
        return len(self.dataset.test_labels)

    def build(self, config: TrainConfig) -> Classifier:
        self.clf = make_classifier(self.dataset, config, self.device)
        return self.clf

    def batch(self, generator: torch.Generator, idx: torch.Tensor, total: int, part: slice,
              epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's ``part`` of a global batch: normalised, augmented images (B, C, H,
        W) and their labels, on the device."""
        ds = self.dataset
        x = self.clf.preprocess(ds.train_images[idx].to(self.device, non_blocking=True))
        y = ds.train_labels[idx].to(self.device, non_blocking=True)
        if self.augment == "altflip-translate":
            x = alternating_flip(x, self.flip_bits[idx] ^ (epoch % 2 == 0))
        x = augment_batch(x, self.augment, generator, total, part)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def loss(self, forward, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        logits = forward(x)
        return self.loss_fn(logits.float(), y), float((logits.argmax(1) == y).sum())

    def evaluate(self, clf: Classifier, tta: int) -> tuple[dict, str]:
        ds = self.dataset
        if not len(ds.test_labels):
            return {"test_acc": None, "test_top5": None}, "no test split"
        ev = evaluate_logits(sharded_logits(clf, ds.test_images, self.config.eval_batch_size,
                                            tta=tta), ds.test_labels, ds.classes)
        return ({"test_acc": round(ev.top1, 6), "test_top5": round(ev.top5, 6)},
                f"test {100 * ev.top1:6.2f}%  top-{ev.k} {100 * ev.top5:6.2f}%")


class Interrupted(ConvscopeError):
    """Ctrl-C during training: a checkpoint was saved first."""

    exit_code = 130


@contextmanager
def interrupt_flag() -> Iterator[dict]:
    """Turn SIGINT into a flag the loop checks between steps, so that Ctrl-C stops at a
    clean point and saves a checkpoint.  A second Ctrl-C stops at once."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    """One training run: set up from a config, run epoch by epoch, checkpoint, resume.

    >>> clf = Trainer(load_dataset("digits"), TrainConfig(model="linear")).run()  # doctest: +SKIP
    """

    def __init__(self, dataset: ImageDataset | AnnotatedDataset, config: TrainConfig, *,
                 progress: bool = True, log: Callable[[str], None] = print) -> None:
        task = getattr(dataset, "task", "classify")
        # the trainer's own resolved copy: the caller's config is never written into
        config = config.resolve(task)
        if task == "classify" and len(dataset.classes) < 2:
            raise ConvscopeError(
                f"{dataset.name} has {len(dataset.classes)} class ({', '.join(dataset.classes)})"
                ", and a classifier learns to tell at least two apart; put the images in one "
                "folder per class, as PATH/<class>/<image> (a folder without class folders is "
                "for looking at a trained model's views).")
        self.dataset = dataset
        self.dist = distributed.current()
        self.progress = progress and self.dist.is_main
        self.log = log if self.dist.is_main else (lambda _m: None)
        self.device = resolve_device(config.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.saved = dict(config.resolved)  # on resume: what the run recorded at its start
        #: what the task decides: the model object, batches, loss and scores
        self.objective = (ClassifyObjective(dataset, config, self.device) if task == "classify"
                          else AnnotatedObjective(dataset, config, self.device))
        self.clf = self.objective.build(config)
        from_recipe = list(config.resolved["from_recipe"])
        if config.max_grad_norm is None and weight_layers(self.clf.model) >= DEEP_LAYERS:
            config = replace(config, max_grad_norm=DEEP_MAX_GRAD_NORM)  # deep nets: a limit
            from_recipe.append("max_grad_norm")
        self.n = self.objective.n
        if self.n == 0:
            raise ConvscopeError(f"{dataset.name} has no training images.")
        if "batch_size" in from_recipe:  # keep >= 10 steps per epoch
            config = replace(config, batch_size=min(config.batch_size, max(32, self.n // 10)))
        self.batch = min(config.batch_size, self.n)
        self.steps = math.ceil(self.n / self.batch)
        self.augment = self.objective.augment
        model = self.clf.model
        #: a linear probe: the one module that trains (None: all of them)
        self.head = freeze_backbone(model) if config.freeze else None
        if task == "classify":
            init_from_data(model, dataset, self.clf.preprocess)
        if config.channels_last and task == "classify":
            model.to(memory_format=torch.channels_last)
        self.optimizer, self.scheduler = make_optimizer(model, config, self.steps)
        self.amp = amp_dtype(config, self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        if config.sync_bn:
            if not (self.dist.enabled and self.device.type == "cuda"):
                raise ConvscopeError("`sync_bn` needs a multi-GPU torchrun job (PyTorch's "
                                     "SyncBatchNorm runs only on GPUs).")
            model = self.clf.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.forward = model
        if self.dist.enabled:
            self.forward = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if config.compile:
            self.forward = CompiledWithFallback(self.forward, self.log)
        self.generator = torch.Generator().manual_seed(config.seed)
        # alternating flip: each image gets a fixed random side, swapped every other epoch
        self.flip_bits = self.objective.flip_bits = torch.rand(
            self.n, generator=torch.Generator().manual_seed(config.seed + 1)) < 0.5
        self.state = LoopState()
        self.out = Path(config.out) if config.out else None
        #: the run's config as it trains: resolved, with what the run used in ``resolved``
        self.config = replace(config, resolved={
            "model": canonical_name(*parse_model_name(config.model, task)),
            "model_options": self.clf.meta.options,
            "device": str(self.device),
            "augment": self.augment,
            "steps_per_epoch": self.steps,
            "input_size": list(self.clf.meta.input_size),
            "task": task,
            "parameters": sum(p.numel() for p in self.clf.model.parameters()),
            "dataset": {k: v for k, v in dataset.describe().items() if k != "notes"},
            "threads": torch.get_num_threads(),
            "amp": str(self.amp).replace("torch.", "") if self.amp else "off",
            "from_recipe": from_recipe,
            "processes": self.dist.world,
        })

    # ------------------------------------------------------------------ files
    def start_files(self) -> None:
        """A new run: write config.json and an empty metrics.jsonl.  Over an earlier run's
        files (``--force``), write them to ``out/.pending`` and replace the old ones only
        when the new run has finished, so a failed new run loses nothing."""
        if not self.out:
            return
        staged = any((self.out / name).exists() for name in RUN_FILES)
        self.dist.barrier()  # every process decided before rank 0 writes anything
        if staged:
            self.out = self.out / PENDING
        if self.dist.is_main:
            if staged and self.out.exists():  # an earlier replacement that never finished
                shutil.rmtree(self.out, ignore_errors=True)
            write_text_atomic(self.out / "config.json",
                              json.dumps(self.config.to_dict(), indent=2) + "\n")
            write_text_atomic(self.out / "metrics.jsonl", "")

    def publish(self) -> None:
        """Move a finished ``.pending`` run's files over the earlier run's."""
        if not (self.out and self.out.name == PENDING and self.dist.is_main):
            return
        final = self.out.parent
        for name in RUN_FILES:
            if (self.out / name).exists():
                try:
                    (self.out / name).replace(final / name)
                except OSError as exc:
                    raise write_error(final / name, exc) from None
        shutil.rmtree(self.out, ignore_errors=True)
        self.out = final

    def check_data(self, tensors: dict) -> None:
        """Refuse to resume when the data changed since the run started, in one sentence."""
        ds, saved = self.dataset, self.saved.get("dataset") or {}
        what = f"{ds.name} changed since this run started"
        fix = "restore the data, or start a new run over it (`convscope train --force`)"
        old_classes = saved.get("classes")
        if isinstance(old_classes, list) and old_classes != list(ds.classes):
            added = [c for c in ds.classes if c not in old_classes]
            removed = [c for c in old_classes if c not in ds.classes]
            change = ", ".join(filter(None, [
                f"classes added: {', '.join(map(str, added[:5]))}" if added else "",
                f"classes removed: {', '.join(map(str, removed[:5]))}" if removed else "",
            ])) or "the classes are in another order"
            raise ConvscopeError(f"{what} ({change}); {fix}.")
        old_n = saved.get("train")
        order = tensors.get("loop.order")
        if order is not None and old_n is None:
            old_n = len(order)
        if isinstance(old_n, int) and old_n != self.n:
            raise ConvscopeError(f"{what}: it had {old_n:,} training images and now has "
                                 f"{self.n:,}; {fix}.")
        model = self.clf.model.state_dict()
        for k, v in tensors.items():
            if k.startswith("model.") and k[6:] in model and v.shape != model[k[6:]].shape:
                raise ConvscopeError(f"{what} (the checkpoint's {k[6:]} has shape "
                                     f"{tuple(v.shape)}, the model for the data now needs "
                                     f"{tuple(model[k[6:]].shape)}); {fix}.")

    def resume(self) -> None:
        """Continue from ``out/checkpoint.safetensors``; metrics.jsonl is rewritten from the
        checkpoint, so epochs a killed run logged after it are not counted twice."""
        self.out = run_folder(self.out)
        if self.dist.is_main:  # a killed writer's temp files: never read, removed
            for name in RUN_FILES:
                remove_stale_temps(self.out, name)
        tensors, meta = read_checkpoint(self.out, clean=self.dist.is_main)
        self.check_data(tensors)
        self.state = restore(tensors, meta, self.clf.model, self.optimizer, self.scheduler,
                             self.generator)
        if self.dist.is_main:
            lines = "".join(json.dumps(row) + "\n" for row in self.state.history)
            write_text_atomic(self.out / "metrics.jsonl", lines)
        self.dist.barrier()

    def checkpoint(self) -> None:
        """Rank 0 writes; the others wait, so nobody reads a checkpoint still being written."""
        if self.out and self.dist.is_main:
            save_checkpoint(self.out, self.clf.model, self.optimizer, self.scheduler,
                            self.generator, self.state)
        self.dist.barrier()

    # ------------------------------------------------------------------ loop
    def run(self) -> Classifier:
        cfg, st = self.config, self.state
        if st.epoch > cfg.epochs:
            if not self.out or (self.out / "model.safetensors").exists():
                raise ConvscopeError(f"training in {self.out} already finished ({cfg.epochs} "
                                     "epochs); nothing to resume.")
            # killed after the last checkpoint but before the model file: write it now
            self.log("training had finished; writing the model from the last checkpoint")
            return self.finish()
        r = cfg.resolved
        self.log(f"training {r['model']} ({r['parameters']:,} parameters) on "
                 f"{self.dataset.name}: {self.n:,} train / {self.objective.test_count:,} "
                 f"test images, {cfg.epochs} epochs, {cfg.optimizer} lr {cfg.lr:g}, augment "
                 f"{self.augment}, {self.device}"
                 + (f"; resuming at epoch {st.epoch}, step {st.step}" if st.global_step else ""))
        with interrupt_flag() as flag:
            while st.epoch <= cfg.epochs:
                self.train_epoch(flag)
                self.end_epoch()
        return self.finish()

    def finish(self) -> Classifier:
        """Record the config and final metrics in the model and write its file."""
        cfg, st = self.config, self.state
        self.clf.meta = replace(self.clf.meta, tta=cfg.tta, train_config=cfg.to_dict(),
                                metrics=dict(st.history[-1]))
        if self.out and self.dist.is_main:
            self.clf.save(self.out / "model.safetensors")
            self.publish()
        self.dist.barrier()
        return self.clf

    def train_epoch(self, flag: dict) -> None:
        cfg, st, model = self.config, self.state, self.clf.model
        model.train()
        if self.head is not None:
            keep_frozen(model, self.head)
        elif cfg.weights and self.objective.keeps_pretrained_norms:
            keep_norm_statistics(model)  # fine-tuning a classifier: the pretrained statistics stay
        if st.order is None:  # a fresh epoch (a resumed one keeps its saved order)
            st.order = torch.randperm(self.n, generator=self.generator)
        start = time.perf_counter() - st.elapsed
        bar = progress_bar(total=self.n, initial=st.seen, desc=f"epoch {st.epoch}/{cfg.epochs}",
                           unit="img", enable=self.progress, leave=False)
        with bar:
            for i in range(st.step, self.steps):
                batch = st.order[i * self.batch : (i + 1) * self.batch]  # the global batch
                if len(batch) < 2 * self.dist.world and st.seen:  # too small for batch norm
                    break
                part = self.dist.part(len(batch))  # this process's share of it
                idx = batch[part]
                loss_sum, correct, stop = self.train_step(idx, len(batch), part, flag["stop"])
                st.step, st.global_step = i + 1, st.global_step + 1
                st.seen += len(batch)
                st.loss_sum += loss_sum
                st.correct += int(correct)
                st.elapsed = time.perf_counter() - start
                bar.update(len(batch))
                shown = {"acc": f"{st.correct / st.seen:.3f}"} if self.objective.has_accuracy else {}
                bar.set_postfix(loss=f"{st.loss_sum / st.seen:.3f}", **shown,
                                img_s=f"{st.seen / max(st.elapsed, 1e-9):.1f}", refresh=False)
                if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                    self.checkpoint()
                if stop:
                    self.checkpoint()
                    where = f"; resume with `resume=\"{self.out}\"`" if self.out else ""
                    raise Interrupted(f"interrupted at epoch {st.epoch}, step {st.step}"
                                      + (" (checkpoint saved)" if self.out else "") + where + ".")

    def train_step(self, idx: torch.Tensor, total: int, part: slice,
                   stop: bool) -> tuple[float, float, bool]:
        """One optimisation step on this process's ``part`` (training images ``idx``) of a
        global batch of ``total``.

        Returns the global batch's summed loss and correct count, and whether any
        process was asked to stop.
        """
        cfg, st = self.config, self.state
        x, y = self.objective.batch(self.generator, idx, total, part, st.epoch)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            loss, correct = self.objective.loss(self.forward, x, y)
        # one collective per step: the batch's loss and accuracy, divergence, Ctrl-C
        loss_sum, correct, bad, stop = self.dist.all_sum(
            loss.item() * len(idx), float(correct), float(not torch.isfinite(loss)),
            float(stop))
        if bad:
            kept = (f"; the last good checkpoint is kept in {self.out}"
                    if self.out and (self.out / CHECKPOINT_NAME).exists() else "")
            raise ConvscopeError(
                f"training diverged: the loss became {loss_sum / total} at epoch {st.epoch}, "
                f"step {st.step + 1} (learning rate {self.scheduler.get_last_lr()[0]:.3g}); "
                f"lower `lr` or set `max_grad_norm`{kept}.")
        if self.dist.enabled:  # DDP averages gradients over processes: weight by share
            loss = loss * (len(idx) * self.dist.world / total)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.clf.model.parameters(), cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss_sum, correct, bool(stop)

    def end_epoch(self) -> None:
        """Evaluate, log, write the metrics row, and checkpoint at the epoch boundary."""
        cfg, st = self.config, self.state
        train_seconds = st.elapsed
        t = time.perf_counter()
        last = st.epoch == cfg.epochs
        tta = cfg.tta if last else 0  # test-time augmentation for the final score
        scores, test = self.objective.evaluate(self.clf, tta)
        row = {
            "epoch": st.epoch,
            "train_loss": round(st.loss_sum / st.seen, 6),
            **({"train_acc": round(st.correct / st.seen, 6)} if self.objective.has_accuracy
               else {}),
            **scores,
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": round(train_seconds + time.perf_counter() - t, 3),
            "train_seconds": round(train_seconds, 3),
            "images_per_sec": round(st.seen / max(train_seconds, 1e-9), 1),
            "tta": tta,
        }
        st.history.append(row)
        train = (f"train {100 * row['train_acc']:6.2f}%  " if self.objective.has_accuracy
                 else "")
        self.log(f"epoch {st.epoch:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                 f"{train}{test}  {row['seconds']:.1f}s  {row['images_per_sec']:.1f} img/s")
        if self.out and self.dist.is_main:
            append_text(self.out / "metrics.jsonl", json.dumps(row) + "\n")
        st.epoch += 1
        st.step = st.seen = st.correct = 0
        st.loss_sum = st.elapsed = 0.0
        st.order = None
        self.checkpoint()


class CompiledWithFallback:
    """torch.compile's module, falling back to eager execution if compiling fails.

    Compilation happens at the first call, so that is where a missing compiler or an
    unsupported operation shows up; the run then continues eagerly with a note.
    """

    def __init__(self, module: nn.Module, log: Callable[[str], None]) -> None:
        self.eager, self.log = module, log
        self.compiled = torch.compile(module)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as exc:  # noqa: BLE001 - any backend failure: run eagerly
                self.log(f"note: torch.compile failed ({str(exc).splitlines()[0][:120]}); "
                         "training eagerly.")
                self.compiled = None
        return self.eager(x)


def fit(dataset: ImageDataset, config: TrainConfig, *, progress: bool = True,
        log: Callable[[str], None] = print, resume: bool = False) -> Classifier:
    """Train a classifier on ``dataset`` as ``config`` says; write files if ``config.out``.

    With ``resume=True``, continue from the checkpoint in ``config.out``.

    >>> clf = fit(load_dataset("digits"), TrainConfig(model="linear", epochs=1))  # doctest: +SKIP
    """
    trainer = Trainer(dataset, config, progress=progress, log=log)
    if resume:
        trainer.resume()
    else:
        trainer.start_files()
    return trainer.run()

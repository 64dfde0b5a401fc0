"""One task's training run: set up or resume, train, log, checkpoint, export, summarise.

Entry point: :func:`run_training` (called by ``workflow_scripts/train.py``). The run resumes
from the latest checkpoint of the same setup (:mod:`~medcyclegan.training.checkpoints`), logs a
progress line every ``training.log_every`` steps to the log, to the JSON-lines metrics
(:mod:`~medcyclegan.training.metrics`) and to TensorBoard, and ends by exporting both generators
(:mod:`medcyclegan.inference.export`) and writing a summary. It trains on the devices
``training.device`` allows (:mod:`.devices`), over several replicas with ``training.distribute``
(:mod:`.distribute`), and stops cleanly on SIGTERM/SIGUSR1 (:mod:`.preemption`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medcyclegan.config.tasks import TASKS, training_only
from medcyclegan.io import atomic as io
from medcyclegan.training import tensorboard
from medcyclegan.training.metrics import METRICS_FILE, MetricsLog, loss_labels
from medcyclegan.training.preemption import Preempted, SignalWatch

log = logging.getLogger("medcyclegan.training")


@dataclass
class _Run:
    """What the set-up of a run gives the rest of it."""

    task: str
    src: str
    trainer: object
    fingerprint: dict
    ckdir: Path
    manager: object
    start: int
    total: int
    gpus: list
    n_params: dict


@dataclass
class _Window:
    """Losses and speed since the previous progress line."""

    losses: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    steps: int = 0

    def restart_clock(self) -> None:
        self.t0, self.steps = time.perf_counter(), 0

    def steps_per_s(self) -> float:
        return self.steps / max(time.perf_counter() - self.t0, 1e-9) if self.steps else float("nan")


@dataclass
class _Progress:
    """Where the training loop stopped."""

    step: int
    last_saved: int
    first_step_s: float | None = None
    last_losses: dict = field(default_factory=dict)
    killed: bool = False
    preempted: str | None = None  #: the signal that stopped the run
    run_s: float = 0.0


def run_training(
    cfg: dict,
    task: str,
    src_train,
    ct_train,
    model_dir,
    summary_path,
    checkpoint_dir,
    tensorboard_dir=None,
    threads: int | None = None,
    stop_after: int | None = None,
    preprocessing: dict | None = None,
    metrics_path=None,
) -> dict:
    """Train (or resume) one task and export both generators; return the summary dict.

    ``cfg`` is a merged per-task config (:func:`medcyclegan.config.tasks.task_config`).
    ``preprocessing``: the record of how the training slices were made, stored in the model folder.
    ``metrics_path``: where to copy the run's metrics (JSON lines) at the end.
    ``stop_after``: end the run after that many steps *without* a final checkpoint or export
    (simulates a killed job; for tests).
    """
    import tensorflow as tf

    from medcyclegan.training.data import unpaired_dataset

    cfg = dict(cfg)
    run = _start_run(cfg, task, src_train, ct_train, checkpoint_dir, threads)
    writer = tf.summary.create_file_writer(str(tensorboard_dir)) if tensorboard_dir else None
    # a resumed run reshuffles with a different seed instead of replaying the first steps' order
    data = iter(unpaired_dataset(src_train, ct_train, cfg, seed=int(cfg["seed"]) + run.start))
    with MetricsLog(run.ckdir / METRICS_FILE, run.start, run.src) as metrics:
        progress = _train(run, cfg, data, writer, metrics, stop_after)
        if writer is not None:
            writer.flush()
        if progress.killed:
            log.info("stopped after %d steps (stop_after) without final checkpoint/export", progress.step - run.start)
            return {"stopped_at": progress.step, "resumed_from": run.start}
        if progress.preempted:
            raise Preempted(
                f"stopped by {progress.preempted} at step {progress.step} of {run.total}, checkpoint written: "
                f"rerun the same command to resume from step {progress.step}"
            )
        if progress.last_saved != progress.step:
            run.manager.save(checkpoint_number=progress.step)
        if metrics_path is not None:
            metrics.copy_to(metrics_path)
    manifest, export_s = _export(run, cfg, model_dir, ct_train, progress.step, preprocessing)
    summary = _summary(run, cfg, progress, export_s)
    io.write_text(summary_path, json.dumps(summary, indent=2))
    names = {k: v["path"] for k, v in manifest["generators"].items()}
    log.info(
        "done: %d steps this run (%.1f s), exported %s and %s (%.1f s)",
        progress.step - run.start,
        progress.run_s,
        names["to_ct"],
        names["from_ct"],
        export_s,
    )
    return summary


def _start_run(cfg: dict, task: str, src_train, ct_train, checkpoint_dir, threads) -> _Run:
    """Set TensorFlow up, build the trainer and restore the latest checkpoint of the same setup."""
    import keras
    import tensorflow as tf

    from medcyclegan.inference.runtime import configure_tensorflow
    from medcyclegan.training import distribute
    from medcyclegan.training.checkpoints import prepare_checkpoint_dir, restore_latest, run_fingerprint
    from medcyclegan.training.devices import select_devices
    from medcyclegan.training.trainer import CycleGANTrainer

    distribute.configure_devices(cfg)  # logical CPU replicas: before any op runs
    # the step's two cycles are independent branches: run them side by side (see thread_pools)
    gpus = select_devices(cfg.get("device", "auto"), configure_tensorflow(threads, concurrent_ops=2))
    strategy = distribute.make_strategy(cfg)  # after select_devices: it reads the visible GPUs
    src = TASKS[task]
    log.info(
        "task %s: %s <-> ct; TensorFlow %s, Keras %s; GPUs: %s; %s",
        task,
        src,
        tf.__version__,
        keras.__version__,
        [g.name for g in gpus] or "none (CPU)",
        distribute.describe(strategy),
    )
    keras.utils.set_random_seed(int(cfg["seed"]))
    trainer = CycleGANTrainer(cfg, strategy=strategy)
    fp = run_fingerprint(cfg, {"src_train": src_train, "ct_train": ct_train}, trainer.architecture_hash())
    ckdir = prepare_checkpoint_dir(checkpoint_dir, fp)
    manager, start = restore_latest(trainer.checkpoint, ckdir, int(cfg["keep_checkpoints"]), fp["fingerprint"])
    total = int(cfg["steps"])
    n_params = {k: int(m.count_params()) for k, m in trainer.models.items()}
    log.info(
        "parameters: %s; image %dx%d, batch %d, %d steps, precision %s",
        n_params,
        cfg["image_size"],
        cfg["image_size"],
        cfg["batch_size"],
        total,
        trainer.policy,
    )
    return _Run(task, src, trainer, fp, ckdir, manager, start, total, gpus, n_params)


def _train(run: _Run, cfg: dict, data, writer, metrics: MetricsLog, stop_after: int | None) -> _Progress:
    """Train steps up to ``training.steps``, with progress lines and checkpoints on their cadence;
    on SIGTERM/SIGUSR1, stop after the current step with a checkpoint of it (:mod:`.preemption`)."""
    t_run = time.perf_counter()
    window = _Window()
    progress = _Progress(step=run.start, last_saved=run.start if run.manager.latest_checkpoint else -1)
    with SignalWatch() as watch:
        while progress.step < run.total:
            if stop_after is not None and progress.step - run.start >= stop_after:
                progress.killed = True
                break
            window = _one_step(run, cfg, next(data), writer, metrics, progress, window)
            if watch.received:
                progress.preempted = watch.received
                if progress.last_saved != progress.step:
                    run.manager.save(checkpoint_number=progress.step)
                    progress.last_saved = progress.step
                log.warning("%s: checkpoint of step %d written; stopping", progress.preempted, progress.step)
                break
    progress.run_s = time.perf_counter() - t_run
    return progress


def _one_step(run: _Run, cfg: dict, batch, writer, metrics: MetricsLog, progress: _Progress, window: _Window):
    """One train step, then its progress line and checkpoint when due; returns the window to go on with."""
    trainer, total = run.trainer, run.total
    src_b, ct_b = batch
    t0 = time.perf_counter()
    losses = {k: float(v) for k, v in trainer.train_step(src_b, ct_b).items()}
    step = progress.step = int(trainer.step.numpy())
    if progress.first_step_s is None:
        progress.first_step_s = time.perf_counter() - t0
        log.info("first step (graph tracing included) took %.1f s", progress.first_step_s)
        window.restart_clock()
    else:
        window.steps += 1
    if not all(np.isfinite(v) for v in losses.values()):
        raise FloatingPointError(f"non-finite loss at step {step}: {losses}")
    for k, v in losses.items():
        window.losses.setdefault(k, []).append(v)
    if step % max(1, int(cfg["log_every"])) == 0 or step == total:
        progress.last_losses = _report_progress(run, window, step, writer, metrics)
        window = _Window()
    if step % max(1, int(cfg["checkpoint_every"])) == 0 or step == total:
        path = run.manager.save(checkpoint_number=step)
        progress.last_saved = step
        log.info("checkpoint %s", path)
        if writer is not None and cfg.get("tensorboard_images", True):
            tensorboard.write_translations(writer, trainer, src_b, ct_b, run.src, step)
    return window


def _report_progress(run: _Run, window: _Window, step: int, writer, metrics: MetricsLog) -> dict:
    """The progress line: mean losses of the window, learning rate, speed; return the means."""
    mean = {k: float(np.mean(v)) for k, v in window.losses.items()}
    rate = window.steps_per_s()
    lr = run.trainer.learning_rate()
    eta = (run.total - step) / rate if rate and np.isfinite(rate) and rate > 0 else float("nan")
    labels = loss_labels(run.src)
    losses = " ".join(f"{labels.get(k, k)}={v:.4f}" for k, v in mean.items())
    log.info("step %d/%d %s lr=%.3g %.2f steps/s eta %.0f s", step, run.total, losses, lr, rate, eta)
    metrics.append(step, mean, lr, rate)
    if writer is not None:
        tensorboard.write_progress(writer, mean, lr, rate, step)
    return mean


def _export(run: _Run, cfg: dict, model_dir, ct_train, step: int, preprocessing: dict | None):
    """Export both generators (the weight averages with ``ema_decay``); return the manifest and seconds."""
    from medcyclegan.inference.export import export_models
    from medcyclegan.training.data import ct_value_range

    lo, hi = ct_value_range(ct_train)
    t_exp = time.perf_counter()
    manifest = export_models(
        *run.trainer.export_generators(),
        model_dir,
        run.task,
        cfg["image_size"],
        step,
        (lo, hi),
        fingerprint=run.fingerprint["fingerprint"],
        tiled=bool(cfg.get("patches")),
        preprocessing=preprocessing,
        context_slices=int(cfg.get("context_slices", 0)),
    )
    return manifest, time.perf_counter() - t_exp


def _describe(trainer) -> dict:
    from medcyclegan.training import distribute

    return distribute.describe(trainer.strategy)


def _summary(run: _Run, cfg: dict, progress: _Progress, export_s: float) -> dict:
    """``training_summary.json``: what was trained, how fast, the last losses, where it resumed."""
    steps_run = progress.step - run.start
    run_s, first_step_s = progress.run_s, progress.first_step_s
    rate = steps_run / run_s if steps_run else None
    steady = (steps_run - 1) / (run_s - first_step_s) if first_step_s is not None and steps_run > 1 else None
    return {
        "task": run.task,
        "source_modality": run.src,
        "steps": run.total,
        "resumed_from": run.start,
        "steps_this_run": steps_run,
        "train_wall_s": round(run_s, 2),
        "first_step_s": round(first_step_s, 2) if first_step_s is not None else None,
        "steps_per_s": round(steady, 4) if steady else (round(rate, 4) if rate else None),
        "export_s": round(export_s, 2),
        "final_losses": progress.last_losses,
        "learning_rate_final": run.trainer.learning_rate(),
        "parameters": run.n_params,
        "precision": run.trainer.policy,
        "devices": [g.name for g in run.gpus] or ["CPU"],
        "distribute": _describe(run.trainer),
        "fingerprint": run.fingerprint["fingerprint"],
        "checkpoint_dir": str(run.ckdir),
        "config": training_only(cfg),
    }

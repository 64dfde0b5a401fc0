"""Checkpoints and resume: which checkpoint folder belongs to which training run.

Checkpoints go to a folder that is *not* a Snakemake output (``checkpoints/`` next to the
model), so Snakemake's clean-up of a killed job never deletes them. The folder is tied to the run
by ``run.json`` holding a fingerprint of the training configuration (all keys except logging /
checkpoint cadence), of the input TFRecords and of the networks' code. A rerun with the same
fingerprint resumes from the latest checkpoint (step counter, weights, optimiser moments,
learning-rate schedule position, image pools and their RNG). A rerun with a different
fingerprint moves the old folder to ``checkpoints.previous/`` (replacing an older one), says so
in the log and starts from step 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from medcyclegan.config.tasks import training_only
from medcyclegan.io import atomic as io

log = logging.getLogger("medcyclegan.training")

#: keys that change how a run is logged or checkpointed, or on which device it runs, not what it
#: learns: excluded from the checkpoint fingerprint (a run may resume with other values)
#: (``distribute``/``cpu_replicas``: the number of replicas; a run begun on one device may resume on
#: several and vice versa, see medcyclegan.training.distribute)
RESUMABLE_KEYS = (
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard_images",
    "device",
    "distribute",
    "cpu_replicas",
)

#: bump when the training math changes in a way the config does not show (losses, train step)
TRAINING_CODE_VERSION = 1

RUN_FILE = "run.json"


def file_fingerprint(path) -> str:
    """Content hash (BLAKE2b) of a file or of all files of a folder, streamed."""
    from medcyclegan.io.tfrecords import tfrecord_files

    h = hashlib.blake2b(digest_size=16)
    for f in tfrecord_files(path):
        h.update(Path(f).name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def run_fingerprint(cfg: dict, inputs: dict, architecture: str = "") -> dict:
    """What a checkpoint folder is tied to: the math-relevant config, the input data, the
    networks' architecture (hash of their Keras configs, see :meth:`CycleGANTrainer.architecture_hash`)
    and :data:`TRAINING_CODE_VERSION`."""
    relevant = {k: v for k, v in training_only(cfg).items() if k not in RESUMABLE_KEYS}
    data = {name: file_fingerprint(p) for name, p in sorted(inputs.items())}
    code = {"architecture": architecture, "training_code_version": TRAINING_CODE_VERSION}
    blob = json.dumps({"config": relevant, "data": data, "code": code}, sort_keys=True)
    return {
        "fingerprint": hashlib.sha256(blob.encode()).hexdigest()[:16],
        "config": relevant,
        "data": data,
        "code": code,
    }


def prepare_checkpoint_dir(checkpoint_dir, fingerprint: dict) -> Path:
    """Create/validate ``checkpoint_dir`` for ``fingerprint`` (see module docstring)."""
    ckdir = Path(checkpoint_dir)
    meta = ckdir / RUN_FILE
    if ckdir.exists() and any(ckdir.iterdir()):
        old = _read_run_file(meta)
        if old is None or old.get("fingerprint") != fingerprint["fingerprint"]:
            _set_aside(ckdir, changed_parts(old, fingerprint))
    ckdir.mkdir(parents=True, exist_ok=True)
    if not meta.exists():
        io.write_text(meta, json.dumps(fingerprint, indent=2, sort_keys=True))
    return ckdir


def _read_run_file(meta: Path) -> dict | None:
    if not meta.exists():
        return None
    try:
        return json.loads(meta.read_text())
    except json.JSONDecodeError:
        return None


def changed_parts(old: dict | None, new: dict) -> list[str]:
    """What differs between two run fingerprints: config keys, then input data, then code."""
    if old is None:
        return []
    old_config = old.get("config", {})
    changed = sorted(k for k in set(old_config) | set(new["config"]) if old_config.get(k) != new["config"].get(k))
    changed += [f"input data ({k})" for k in new["data"] if old.get("data", {}).get(k) != new["data"][k]]
    changed += [f"code ({k})" for k in new.get("code", {}) if old.get("code", {}).get(k) != new["code"][k]]
    return changed


def _set_aside(ckdir: Path, changed: list[str]) -> None:
    """Move another run's checkpoints to ``<folder>.previous`` (replacing an older one)."""
    backup = ckdir.with_name(ckdir.name + ".previous")
    log.warning(
        "checkpoints in %s belong to a different training setup (changed: %s); moving them to %s "
        "and starting from step 0",
        ckdir,
        ", ".join(changed) or "unknown: no run.json",
        backup,
    )
    if backup.exists():
        shutil.rmtree(backup)
    os.replace(ckdir, backup)


def restore_latest(checkpoint, ckdir: Path, keep: int, fingerprint: str):
    """A ``CheckpointManager`` over ``ckdir`` and the step it resumes from (0: no checkpoint yet).

    Restores ``checkpoint`` (the trainer's ``tf.train.Checkpoint``) from the latest checkpoint.
    """
    import tensorflow as tf

    manager = tf.train.CheckpointManager(checkpoint, str(ckdir), max_to_keep=keep)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        start = int(checkpoint.step.numpy())
        log.info("resuming from step %d (checkpoint %s)", start, manager.latest_checkpoint)
    else:
        start = 0
        log.info("no checkpoint in %s: starting from step 0 (fingerprint %s)", ckdir, fingerprint)
    return manager, start

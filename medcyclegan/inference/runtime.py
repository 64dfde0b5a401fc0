"""Running exported generators: the TensorFlow set-up of a job and loading a model folder.

A model folder holds ``manifest.json`` (what each SavedModel translates, its input size and the CT
value range), one SavedModel per direction, each with a ``serve`` endpoint, and
``preprocessing.json`` (how its training slices were made).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcyclegan.config.resources import available_cores
from medcyclegan.config.settings import with_defaults

MANIFEST_FILE = "manifest.json"
PREPROCESSING_FILE = "preprocessing.json"


def load_preprocessing(model_dir, override=None) -> dict:
    """The model's preprocessing record: ``override`` if given, else ``model_dir/preprocessing.json``;
    sections it lacks get the config schema's defaults."""
    path = Path(override) if override else Path(model_dir) / PREPROCESSING_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no preprocessing record ({path}). The workflow writes it into the model folder when it "
            f"trains; a model trained before that kept it next to the folder: pass --preprocessing "
            f"results/<task>/preprocessing.json, or a JSON of medcyclegan.config.settings.modality_settings."
        )
    return with_defaults(json.loads(path.read_text()))


def thread_pools(threads: int, concurrent_ops: int = 1) -> tuple[int, int]:
    """(intra-op, inter-op) thread counts sharing ``threads`` cores among ``concurrent_ops`` ops.

    A graph with independent branches (the CycleGAN step's two cycles and four discriminator
    calls) runs faster on few cores with its ops side by side, each on fewer threads, than one
    after the other, each on all of them; a chain of ops (a generator at inference) wants all
    cores inside each op.
    """
    n = max(1, int(threads))
    inter = max(1, min(int(concurrent_ops), n))
    if inter == 1:
        return n, min(n, 2)
    return max(1, n // inter), inter


def configure_tensorflow(threads: int | None = None, concurrent_ops: int = 1) -> list:
    """Set CPU thread pools (before any op runs) and GPU memory growth; return the GPUs seen.

    ``concurrent_ops``: independent ops to run side by side (:func:`thread_pools`).
    """
    try:
        import tensorflow as tf
    except ImportError as err:  # the package installs TensorFlow only with an extra
        raise ImportError(
            "TensorFlow is not installed: pip install -e '.[cpu]' (CPU build) or -e '.[gpu]' (NVIDIA GPUs)"
        ) from err

    if threads:
        intra, inter = thread_pools(min(int(threads), available_cores()), concurrent_ops)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:  # runtime already initialised (e.g. in tests)
            pass
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:
            pass
    return gpus


def load_generator(path):
    """Load an exported generator; return ``f(np.ndarray [B, H, W, C]) -> np.ndarray [B, H, W, 1]``
    (float32; ``C`` = 1, or ``2k + 1`` for a source->CT generator with 2.5D context)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))

    def run(x, batch_size: int = 8):
        x = np.asarray(x, np.float32)
        outs = [loaded.serve(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros_like(x[..., :1])

    run.module = loaded
    return run


def load_manifest(model_dir) -> dict:
    """``manifest.json`` of a model folder; ``context_slices`` is 0 where a model predates the key."""
    manifest = json.loads((Path(model_dir) / MANIFEST_FILE).read_text())
    manifest.setdefault("context_slices", 0)
    return manifest


def generator_path(model_dir, direction: str) -> Path:
    """``direction``: ``"to_ct"`` or ``"from_ct"``."""
    manifest = load_manifest(model_dir)
    return Path(model_dir) / manifest["generators"][direction]["path"]

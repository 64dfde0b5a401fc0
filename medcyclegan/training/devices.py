"""Which devices a training run uses (``training.device``), never silently the wrong one.

A CPU build of TensorFlow on a GPU node, or a node whose GPU is hidden, trains on the CPU at a
hundredth of the speed and says nothing. ``gpu`` turns that into an immediate stop with what to
check; ``cpu`` hides the GPUs; ``auto`` takes what TensorFlow sees.
"""

from __future__ import annotations

import os


class DeviceError(RuntimeError):
    """The configured device is not available."""


def no_gpu_message() -> str:
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={hidden!r} hides them)" if hidden is not None and not hidden.strip() else ""
    return (
        f"training.device is gpu but TensorFlow sees no GPU{where}: install the CUDA build of TensorFlow "
        "(pip install -e '.[gpu]', not '.[cpu]'), check that `nvidia-smi` on this node lists the GPU, and that "
        "the job was given one (Slurm: the gpu resource); or set training.device: auto to train on the CPU"
    )


def select_devices(device: str, gpus: list) -> list:
    """The GPUs to train on (empty: the CPU), after hiding GPUs for ``cpu``. Call before any op runs.

    ``gpus``: the physical GPUs TensorFlow lists (:func:`medcyclegan.inference.runtime.configure_tensorflow`).
    """
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"training.device must be auto, cpu or gpu, not {device!r}")
    if device == "gpu" and not gpus:
        raise DeviceError(no_gpu_message())
    if device == "cpu" and gpus:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        return []
    return list(gpus)

"""Training on several devices: ``tf.distribute.MirroredStrategy`` (``training.distribute``).

* ``distribute: none`` trains on one device with TensorFlow's default strategy (exactly the
  single-device trainer); ``mirrored`` keeps a copy of every variable on each device
  (replica), splits each global batch of ``batch_size`` into equal per-replica shards and sums
  the replicas' gradients; ``auto`` is ``mirrored`` when more than one GPU is visible, else ``none``.
* ``cpu_replicas`` splits the CPU into that many logical devices (:func:`configure_devices`) so that
  ``mirrored`` runs that many replicas on a machine without GPUs: for tests and CI, not for speed.
  It is ignored where GPUs are visible (the replicas are the GPUs).

Call order in a training job, before any TensorFlow op runs: :func:`configure_devices`, the
thread/GPU set-up (:func:`medcyclegan.inference.runtime.configure_tensorflow`), then
:func:`make_strategy` (which initialises TensorFlow), then
``CycleGANTrainer(cfg, strategy=strategy)``.

Image pools (:class:`ReplicaImagePools`): each replica keeps its own history of generated
images, in plain variables on its own device, with its own seeded random stream; replica 0's pool
is saved exactly as a single-device pool, so checkpoints resume across replica counts.
"""

from __future__ import annotations

import tensorflow as tf

from medcyclegan.gan.image_pool import ImagePool

#: values of ``training.distribute``
STRATEGIES = ("auto", "none", "mirrored")


def configure_devices(cfg: dict) -> None:
    """Split the CPU into ``cfg['cpu_replicas']`` logical devices (when > 1). Call before any op runs.

    Idempotent: a second call, or a TensorFlow already initialised with at least that many logical
    CPUs, is fine. Raises ``RuntimeError`` when TensorFlow is already initialised with fewer.
    """
    n = int(cfg.get("cpu_replicas", 1))
    if n < 1:
        raise ValueError(f"training.cpu_replicas must be >= 1, got {n}")
    if n == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:  # the runtime is already initialised: the layout is fixed
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= n:
            return
        raise RuntimeError(
            f"training.cpu_replicas = {n} needs {n} logical CPU devices, but TensorFlow was already "
            f"initialised with {have}: call medcyclegan.training.distribute.configure_devices(cfg) "
            f"before any TensorFlow op runs (in a fresh process)"
        ) from e


def check_batch_size(batch_size: int, replicas: int) -> None:
    """Raise ``ValueError`` unless the global ``batch_size`` splits evenly over the replicas."""
    if int(batch_size) % int(replicas):
        raise ValueError(
            f"training.batch_size ({batch_size}) must be divisible by the number of replicas ({replicas}): "
            f"each replica trains on batch_size / replicas images per step"
        )


def make_strategy(cfg: dict) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` of ``cfg['distribute']`` (see the module docstring).

    ``mirrored`` replicates over the visible GPUs, or without GPUs over the first
    ``cpu_replicas`` logical CPUs (one replica when ``cpu_replicas`` is 1: valid, and the same
    math as ``none`` up to float rounding). Checks that ``batch_size`` splits over the replicas.
    """
    mode = cfg.get("distribute", "auto")
    if mode not in STRATEGIES:
        raise ValueError(f"training.distribute must be one of {list(STRATEGIES)}, not {mode!r}")
    gpus = tf.config.get_visible_devices("GPU")
    if mode == "auto":
        mode = "mirrored" if len(gpus) > 1 else "none"
    if mode == "none":
        strategy = tf.distribute.get_strategy()
    elif gpus:
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("GPU")])
    else:
        n = int(cfg.get("cpu_replicas", 1))
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < n:
            raise RuntimeError(
                f"training.cpu_replicas = {n} but TensorFlow has {len(cpus)} logical CPU device(s): "
                f"call configure_devices(cfg) before any TensorFlow op runs"
            )
        devices = [d.name for d in cpus[:n]]
        strategy = tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=devices[0])
        )
    check_batch_size(cfg["batch_size"], strategy.num_replicas_in_sync)
    return strategy


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is a real strategy (not TensorFlow's default, single-device one)."""
    with strategy.scope():
        return tf.distribute.has_strategy()


def describe(strategy: tf.distribute.Strategy) -> dict:
    """What the log and ``training_summary.json`` say about the strategy: name, replicas, devices."""
    if is_distributed(strategy):
        devices = list(strategy.extended.worker_devices)
        name = type(strategy).__name__
    else:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name]
        name = "none"
    return {"strategy": name, "replicas": int(strategy.num_replicas_in_sync), "devices": devices}


def replica_index() -> int:
    """The replica this code runs on, as a Python int (0 outside a distributed step)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        raise RuntimeError("replica_index() called in a cross-replica context (outside strategy.run)")
    index = tf.get_static_value(ctx.replica_id_in_sync_group)
    if index is None:
        raise RuntimeError(f"{type(tf.distribute.get_strategy()).__name__} has no static replica id")
    return int(index)


def replica_seed(seed: int, replica: int) -> int:
    """Replica ``replica``'s pool seed: ``seed`` for replica 0 (as on one device), distinct for the others."""
    return int(seed) + (int(replica) << 32)


class _Untracked:
    """Holds the other replicas' pools out of TensorFlow's automatic dependency tracking: they are
    checkpointed by :class:`ReplicaImagePools` itself, as stacked tensors."""

    def __init__(self, pools: list):
        self.pools = pools


class ReplicaImagePools(ImagePool):
    """One :class:`~medcyclegan.gan.image_pool.ImagePool` per replica of a ``MirroredStrategy``.

    ``query`` (inside ``strategy.run``) uses the pool of the replica it runs on, so each replica
    keeps its own history of the fakes of its own shards, as each device of a data-parallel
    reference CycleGAN would. The pools are plain (not mirrored) variables, each on its replica's
    device, created outside the strategy's scope (a mirrored variable cannot hold a different
    value per replica in a checkpoint). Replica ``r`` draws from its own generator seeded
    :func:`replica_seed` ``(seed, r)``.

    Checkpoint: replica 0 is this object's own ``images``, ``count`` and ``rng`` (the same keys as
    a single-device pool); replicas 1.. are saved as this object's tensors ``replica_images``,
    ``replica_count`` and ``replica_rng`` stacked over replicas. Restoring a checkpoint of another
    replica count restores the replicas both runs have (a single-device checkpoint: replica 0)
    and leaves the others empty, freshly seeded; a single-device pool restored from a
    multi-replica checkpoint takes replica 0's pool.
    """

    def __init__(self, pool_size: int, image_shape, seed: int, devices, name: str | None = None):
        devices = list(devices)
        with tf.device(devices[0]):
            super().__init__(pool_size, image_shape, seed=seed, name=name)
        others = []
        for r, device in enumerate(devices[1:], start=1):
            with tf.device(device):
                others.append(ImagePool(pool_size, image_shape, seed=replica_seed(seed, r), name=f"{name}_replica{r}"))
        self._others = _Untracked(others)

    @property
    def replicas(self) -> list:
        """The pools, one per replica (replica 0 is ``self``)."""
        return [self, *self._others.pools]

    def query(self, images: tf.Tensor) -> tf.Tensor:
        r = replica_index()
        if r == 0:
            return super().query(images)
        return self._others.pools[r - 1].query(images)

    # -- checkpoint of replicas 1..

    def _serialize_to_tensors(self):
        pools = self._others.pools
        return {
            "replica_images": tf.stack([tf.convert_to_tensor(p.images) for p in pools]),
            "replica_count": tf.stack([tf.convert_to_tensor(p.count) for p in pools]),
            "replica_rng": tf.stack([tf.convert_to_tensor(p.rng.state) for p in pools]),
        }

    def _restore_from_tensors(self, restored_tensors):
        images, count, rng = (restored_tensors[k] for k in ("replica_images", "replica_count", "replica_rng"))
        ops = []
        for r, pool in enumerate(self._others.pools[: int(images.shape[0])]):
            ops += [pool.images.assign(images[r]), pool.count.assign(count[r]), pool.rng.state.assign(rng[r])]
        return tf.group(ops) if ops else tf.no_op()


def image_pool(pool_size: int, image_shape, seed: int, strategy: tf.distribute.Strategy, name: str):
    """The image pool for a trainer under ``strategy``; call outside ``strategy.scope()``.

    Default strategy: a plain :class:`ImagePool` (the single-device trainer's); one replica of a
    ``MirroredStrategy``: the same on its device; several: :class:`ReplicaImagePools`.
    """
    if not is_distributed(strategy):
        return ImagePool(pool_size, image_shape, seed=seed, name=name)
    devices = list(strategy.extended.worker_devices)
    if len(devices) == 1:
        with tf.device(devices[0]):
            return ImagePool(pool_size, image_shape, seed=seed, name=name)
    return ReplicaImagePools(pool_size, image_shape, seed, devices, name=name)

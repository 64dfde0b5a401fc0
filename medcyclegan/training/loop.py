"""CycleGAN training: configuration, input pipeline, train step, checkpoint/resume, export.

Entry point: :func:`run_training` (called by ``workflow_scripts/train.py``). The pieces are
usable on their own: :func:`task_config` (merged, validated per-task config),
:func:`make_dataset` (unpaired tf.data input), :class:`CycleGANTrainer` (models, optimisers,
image pools, the ``tf.function`` train step and a ``tf.train.Checkpoint`` of all of it),
:func:`export_generator` / :func:`load_generator` (SavedModels that load without this package).

Resume contract: checkpoints go to a folder that is *not* a Snakemake output (``checkpoints/``
next to the model). The folder is tied to the run by ``run.json`` holding a fingerprint of the
training configuration (all keys except logging / checkpoint cadence) and of the input TFRecords.
A rerun with the same fingerprint resumes from the latest checkpoint (step counter, weights,
optimiser moments, learning-rate schedule position, image pools and their RNG). A rerun with a
different fingerprint moves the old folder to ``checkpoints.previous/`` (replacing an older
one), says so in the log and starts from step 0.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import time
from importlib import resources
from pathlib import Path

import numpy as np

log = logging.getLogger("medcyclegan.training")

#: task -> source modality (each task trains both directions between the source and CT)
TASKS = {"mr2ct": "mr", "pet2ct": "pet"}

#: keys that only change how a run is logged/checkpointed: excluded from the checkpoint fingerprint
RESUMABLE_KEYS = ("log_every", "checkpoint_every", "keep_checkpoints", "tensorboard_images")
#: keys the training rule does not use (figure, evaluation, scheduler resources)
NON_TRAINING_KEYS = ("examples", "mem_mb", "runtime_min", "tasks")


# ----------------------------------------------------------------------------- configuration


def training_schema() -> dict:
    """The ``training`` sub-schema of the packaged config schema."""
    import yaml

    text = resources.files("medcyclegan").joinpath("config/config.schema.yaml").read_text()
    return yaml.safe_load(text)["properties"]["training"]


def _fill_defaults(schema: dict, value: dict) -> dict:
    out = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if isinstance(out.get(key), dict) and sub.get("type") == "object":
            out[key] = _fill_defaults(sub, out[key])
    return out


def default_config() -> dict:
    """The default ``training`` config (from the schema), without per-task overrides."""
    cfg = _fill_defaults(training_schema(), {})
    cfg.pop("tasks", None)
    return cfg


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def task_config(training: dict, task: str) -> dict:
    """Merge ``training`` (common values) with ``training.tasks[task]`` and validate the result.

    Missing keys get the schema's defaults. Raises ``ValueError`` with the offending key when the
    merged config is invalid (e.g. a typo in a per-task override).
    """
    import jsonschema

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    schema = training_schema()
    base = _fill_defaults(schema, training or {})
    overrides = (base.pop("tasks", None) or {}).get(task) or {}
    known = set(schema["properties"]) - {"tasks"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"training.tasks.{task}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    merged = _deep_merge(base, overrides)
    try:
        jsonschema.validate(merged, schema)
    except jsonschema.ValidationError as e:
        key = ".".join(str(p) for p in e.absolute_path)
        where = (
            f"training.tasks.{task}.{key}" if e.absolute_path and e.absolute_path[0] in overrides else f"training.{key}"
        )
        raise ValueError(f"invalid training config for task {task}: {where}: {e.message}") from None
    check_config(merged)
    return merged


def check_config(cfg: dict) -> None:
    """Cross-key checks the schema cannot express."""
    from medcyclegan.gan.models import check_unet_geometry

    check_unet_geometry(cfg["image_size"], cfg["unet_depth"])
    if cfg["image_size"] % (2 ** cfg["disc_layers"]):
        raise ValueError(
            f"training.disc_layers = {cfg['disc_layers']} needs image_size divisible by {2 ** cfg['disc_layers']}"
        )
    if cfg["lr_decay_steps"] > cfg["steps"]:
        raise ValueError(f"training.lr_decay_steps ({cfg['lr_decay_steps']}) > training.steps ({cfg['steps']})")


def training_only(cfg: dict) -> dict:
    """The keys the training job uses (what the train rule receives through ``params``)."""
    return {k: v for k, v in cfg.items() if k not in NON_TRAINING_KEYS}


def precision_policy(cfg: dict) -> str:
    mp = cfg.get("mixed_precision", False)
    if mp is True or mp == "float16":
        return "mixed_float16"
    if mp == "bfloat16":
        return "mixed_bfloat16"
    return "float32"


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


#: bump when the training math changes in a way the config does not show (losses, train step)
TRAINING_CODE_VERSION = 1


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
    meta = ckdir / "run.json"
    if ckdir.exists() and any(ckdir.iterdir()):
        old = None
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except json.JSONDecodeError:
                old = None
        if old is None or old.get("fingerprint") != fingerprint["fingerprint"]:
            changed = []
            if old is not None:
                changed = sorted(
                    k
                    for k in set(old.get("config", {})) | set(fingerprint["config"])
                    if old.get("config", {}).get(k) != fingerprint["config"].get(k)
                )
                changed += [
                    f"input data ({k})"
                    for k in fingerprint["data"]
                    if old.get("data", {}).get(k) != fingerprint["data"][k]
                ]
                changed += [
                    f"code ({k})"
                    for k in fingerprint.get("code", {})
                    if old.get("code", {}).get(k) != fingerprint["code"][k]
                ]
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
    ckdir.mkdir(parents=True, exist_ok=True)
    if not meta.exists():
        tmp = meta.with_suffix(".json.partial")
        tmp.write_text(json.dumps(fingerprint, indent=2, sort_keys=True))
        os.replace(tmp, meta)
    return ckdir


# ----------------------------------------------------------------------------- input pipeline


def make_dataset(path, cfg: dict, seed: int):
    """Endless, shuffled, augmented batches [B, S, S, 1] of one domain's training slices.

    Streams the TFRecords (shuffle buffer ``cfg['shuffle_buffer']``), resizes to
    ``cfg['image_size']`` (area averaging) when the stored slices differ, or with
    ``cfg['patches']`` cuts a seeded random ``image_size`` window at the stored resolution, applies
    seeded random flips and prefetches. Never holds more than the shuffle buffer in memory.
    """
    import tensorflow as tf

    from medcyclegan.io.tfrecords import read_dataset

    size = int(cfg["image_size"])
    flip_lr = bool(cfg["flip_left_right"])
    flip_ud = bool(cfg["flip_up_down"])
    patches = bool(cfg.get("patches"))

    def prep(i, image):
        hw = tf.shape(image)[:2]
        if patches:  # a random size x size window at the stored resolution
            tf.debugging.assert_greater_equal(
                tf.reduce_min(hw), size, message=f"training.patches needs stored slices of at least {size} px"
            )
            image = tf.image.stateless_random_crop(
                image, [size, size, 1], seed=tf.stack([tf.cast(seed, tf.int64) + 2, i])
            )
        else:
            image = tf.cond(
                tf.reduce_all(tf.equal(hw, size)),
                lambda: image,
                lambda: tf.image.resize(image, [size, size], method="area"),
            )
        image = tf.ensure_shape(tf.clip_by_value(image, -1.0, 1.0), [size, size, 1])
        if flip_lr:
            image = tf.image.stateless_random_flip_left_right(image, seed=tf.stack([tf.cast(seed, tf.int64), i]))
        if flip_ud:
            image = tf.image.stateless_random_flip_up_down(image, seed=tf.stack([tf.cast(seed, tf.int64) + 1, i]))
        return image

    ds = read_dataset(path, image_only=True, num_parallel_reads=1)
    ds = ds.shuffle(int(cfg["shuffle_buffer"]), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(cfg["batch_size"]), drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def unpaired_dataset(src_path, ct_path, cfg: dict, seed: int):
    """Zip of independently shuffled source and CT streams: ``(src_batch, ct_batch)``."""
    import tensorflow as tf

    return tf.data.Dataset.zip((make_dataset(src_path, cfg, seed), make_dataset(ct_path, cfg, seed + 7919)))


# ----------------------------------------------------------------------------- trainer


class CycleGANTrainer:
    """The four networks, two optimisers, two image pools and the train step.

    Network names: ``g_src2ct`` (source -> CT), ``g_ct2src``, ``d_ct``, ``d_src``.
    """

    def __init__(self, cfg: dict, channels: int = 1):
        import keras
        import tensorflow as tf

        from medcyclegan.gan import losses, schedules
        from medcyclegan.gan.image_pool import ImagePool
        from medcyclegan.gan.models import build_models

        self.cfg = cfg
        self.policy = precision_policy(cfg)
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            self.models = build_models(cfg, channels=channels)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.g_src2ct = self.models["g_src2ct"]
        self.g_ct2src = self.models["g_ct2src"]
        self.d_ct = self.models["d_ct"]
        self.d_src = self.models["d_src"]
        self.g_vars = self.g_src2ct.trainable_variables + self.g_ct2src.trainable_variables
        self.d_vars = self.d_ct.trainable_variables + self.d_src.trainable_variables

        def adam():
            opt = keras.optimizers.Adam(
                learning_rate=schedules.from_config(cfg), beta_1=cfg["beta_1"], beta_2=cfg["beta_2"]
            )
            if self.policy == "mixed_float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            return opt

        self.opt_g = adam()
        self.opt_d = adam()
        self.opt_g.build(self.g_vars)
        self.opt_d.build(self.d_vars)

        shape = (cfg["image_size"], cfg["image_size"], channels)
        self.pool_ct = ImagePool(cfg["pool_size"], shape, seed=cfg["seed"] + 1, name="pool_ct")
        self.pool_src = ImagePool(cfg["pool_size"], shape, seed=cfg["seed"] + 2, name="pool_src")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

        self.adv = cfg["adversarial_loss"]
        self.vgg = losses.VGGLoss(cfg["vgg_weights"], cfg["image_size"]) if cfg.get("vgg_weights") else None

        # exponential moving average of the generators' weights (what is exported when enabled)
        self.ema_decay = float(cfg.get("ema_decay", 0.0))
        self.ema = {}
        if self.ema_decay > 0:
            keras.mixed_precision.set_global_policy(self.policy)
            try:
                twins = build_models(cfg, channels=channels)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            for name in ("g_src2ct", "g_ct2src"):
                twins[name].set_weights(self.models[name].get_weights())
                self.ema[name] = twins[name]
        self.checkpoint = tf.train.Checkpoint(
            step=self.step,
            g_src2ct=self.g_src2ct,
            g_ct2src=self.g_ct2src,
            d_ct=self.d_ct,
            d_src=self.d_src,
            opt_g=self.opt_g,
            opt_d=self.opt_d,
            pool_ct=self.pool_ct,
            pool_src=self.pool_src,
            **{f"ema_{k}": m for k, m in self.ema.items()},
        )
        self.train_step = tf.function(self._train_step)

    def architecture_hash(self) -> str:
        """Hash of the four networks' Keras configs (changes with any architecture change)."""
        blob = json.dumps([self.models[k].to_json() for k in sorted(self.models)] + [self.policy])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def export_generators(self):
        """(source->CT, CT->source) generators to export: the weight averages when ``ema_decay`` > 0."""
        if self.ema:
            return self.ema["g_src2ct"], self.ema["g_ct2src"]
        return self.g_src2ct, self.g_ct2src

    def _update_ema(self):
        import tensorflow as tf

        # warm-up as in tf.train.ExponentialMovingAverage(num_updates=step): early averages forget
        # the random initialisation quickly
        step = tf.cast(self.step, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        for name, twin in self.ema.items():
            for avg, w in zip(twin.weights, self.models[name].weights):
                avg.assign(decay * avg + (1.0 - decay) * tf.cast(w, avg.dtype))

    # -- learning rate and weights

    def _inner(self, opt):
        return getattr(opt, "inner_optimizer", opt)

    def learning_rate(self) -> float:
        opt = self._inner(self.opt_g)
        return float(opt.learning_rate.numpy()) if hasattr(opt.learning_rate, "numpy") else float(opt.learning_rate)

    def all_variables(self) -> dict:
        """Name -> numpy value of every checkpointed variable (weights, optimiser, pools)."""
        out = {}
        for name in ("g_src2ct", "g_ct2src", "d_ct", "d_src"):
            for i, v in enumerate(self.models[name].weights):
                out[f"{name}/{i}"] = np.array(v.numpy())
        for name, twin in self.ema.items():
            for i, v in enumerate(twin.weights):
                out[f"ema_{name}/{i}"] = np.array(v.numpy())
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            for i, v in enumerate(opt.variables):
                out[f"{name}/{i}"] = np.array(v.numpy())
        for name, pool in (("pool_ct", self.pool_ct), ("pool_src", self.pool_src)):
            for v in pool.variables:
                out[f"{name}/{v.name}"] = np.array(v.numpy())
        out["step"] = np.array(self.step.numpy())
        return out

    # -- the train step

    def _apply(self, opt, tape, loss, variables):
        if hasattr(opt, "scale_loss"):
            grads = tape.gradient(opt.scale_loss(loss), variables)
        else:
            grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))

    def _train_step(self, src, ct):
        import tensorflow as tf

        from medcyclegan.gan import losses as L

        cfg = self.cfg
        lam = float(cfg["lambda_cycle"])
        lam_id = float(cfg["lambda_identity"]) * lam
        w_p = float(cfg["perceptual_weight"])
        G, F, D_ct, D_src = self.g_src2ct, self.g_ct2src, self.d_ct, self.d_src
        with tf.GradientTape(persistent=True) as tape:
            fake_ct = G(src, training=True)
            rec_src = F(fake_ct, training=True)
            fake_src = F(ct, training=True)
            rec_ct = G(fake_src, training=True)

            d_fake_ct = D_ct(fake_ct, training=True)
            d_fake_src = D_src(fake_src, training=True)
            g_adv_ct = L.generator_adversarial_loss(d_fake_ct[0], self.adv)
            g_adv_src = L.generator_adversarial_loss(d_fake_src[0], self.adv)
            cycle_src = L.l1(rec_src, src)  # source -> CT -> source
            cycle_ct = L.l1(rec_ct, ct)  # CT -> source -> CT
            g_total = g_adv_ct + g_adv_src + lam * (float(cfg["src_cycle_factor"]) * cycle_src + cycle_ct)
            out = {"g_adv_ct": g_adv_ct, "g_adv_src": g_adv_src, "cycle_src": cycle_src, "cycle_ct": cycle_ct}

            w_o = float(cfg["outline_weight"])
            if w_o > 0:
                outline = L.outline_loss(src, fake_ct) + L.outline_loss(ct, fake_src)
                g_total += w_o * outline
                out["outline"] = outline

            w_s = float(cfg.get("structure_weight", 0.0))
            if w_s > 0:
                structure = L.structure_loss(src, fake_ct) + L.structure_loss(ct, fake_src)
                g_total += w_s * structure
                out["structure"] = structure

            if lam_id > 0:
                identity = L.l1(G(ct, training=True), ct) + L.l1(F(src, training=True), src)
                g_total += lam_id * identity
                out["identity"] = identity

            d_real_ct = D_ct(ct, training=True)
            d_real_src = D_src(src, training=True)
            if w_p > 0:
                perc = L.perceptual_loss(d_real_src[1:], D_src(rec_src, training=True)[1:]) + L.perceptual_loss(
                    d_real_ct[1:], D_ct(rec_ct, training=True)[1:]
                )
                g_total += w_p * perc
                out["perceptual"] = perc
            if self.vgg is not None:
                c1, s1 = self.vgg(src, rec_src)
                c2, s2 = self.vgg(ct, rec_ct)
                g_total += float(cfg["vgg_content_weight"]) * (c1 + c2) + float(cfg["vgg_style_weight"]) * (s1 + s2)
                out["vgg_content"] = c1 + c2
                out["vgg_style"] = s1 + s2

            # discriminators: real vs a fake drawn from the history pool (no gradient to G)
            pooled_ct = self.pool_ct.query(tf.stop_gradient(tf.cast(fake_ct, tf.float32)))
            pooled_src = self.pool_src.query(tf.stop_gradient(tf.cast(fake_src, tf.float32)))
            d_ct_loss = L.discriminator_loss(d_real_ct[0], D_ct(pooled_ct, training=True)[0], self.adv)
            d_src_loss = L.discriminator_loss(d_real_src[0], D_src(pooled_src, training=True)[0], self.adv)
            d_total = d_ct_loss + d_src_loss

        self._apply(self.opt_g, tape, g_total, self.g_vars)
        self._apply(self.opt_d, tape, d_total, self.d_vars)
        del tape
        self.step.assign_add(1)
        if self.ema:
            self._update_ema()
        out.update({"g_total": g_total, "d_ct": d_ct_loss, "d_src": d_src_loss})
        return out


# ----------------------------------------------------------------------------- export / load


def export_generator(model, path, image_size: int, tiled: bool = False) -> None:
    """Write ``model`` as a TF SavedModel with endpoint ``serve``.

    ``serve(x)``: ``x`` float32 [B, H, W, 1] in [-1, 1] of any size; returns [B, H, W, 1].
    A model trained on whole resized slices resizes ``x`` to the training size (area averaging
    down, bilinear up), translates, and resizes back. A model trained on patches (``tiled``)
    translates at the input's own resolution, in ``image_size`` windows at half-window steps
    (the slice padded with the background -1 to fit) blended with a Hann window: each window is
    normalised like the training patches, which a whole-slice pass through instance norm is not.
    Loads with ``tf.saved_model.load(path).serve`` or ``keras.layers.TFSMLayer(path,
    call_endpoint="serve")``: no custom classes, no medcyclegan import.
    """
    import keras
    import tensorflow as tf

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    size = int(image_size)
    hann = np.hanning(size + 2)[1:-1]
    tile_weight = np.outer(hann, hann).astype(np.float32)  # > 0 everywhere: every pixel gets a weight

    def serve_resized(x):
        x = tf.cast(x, tf.float32)
        hw = tf.shape(x)[1:3]
        same = tf.reduce_all(tf.equal(hw, size))
        down = tf.reduce_all(hw >= size)
        xi = tf.cond(
            same,
            lambda: x,
            lambda: tf.cond(
                down,
                lambda: tf.image.resize(x, [size, size], method="area"),
                lambda: tf.image.resize(x, [size, size], method="bilinear"),
            ),
        )
        xi = tf.ensure_shape(xi, [None, size, size, 1])
        y = tf.cast(model(xi, training=False), tf.float32)
        y = tf.cond(same, lambda: y, lambda: tf.image.resize(y, hw, method="bilinear"))
        return tf.clip_by_value(y, -1.0, 1.0)

    def serve_tiled(x):
        x = tf.cast(x, tf.float32)
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        stride = size // 2
        # pad (background -1) so that windows at multiples of the stride cover the slice exactly
        hp = size + tf.cast(tf.math.ceil(tf.maximum(h - size, 0) / stride), tf.int32) * stride
        wp = size + tf.cast(tf.math.ceil(tf.maximum(w - size, 0) / stride), tf.int32) * stride
        top, left = (hp - h) // 2, (wp - w) // 2
        xp = tf.pad(x, [[0, 0], [top, hp - h - top], [left, wp - w - left], [0, 0]], constant_values=-1.0)
        weight = tf.constant(tile_weight[None, :, :, None])
        n_cols = (wp - size) // stride + 1

        def add_window(k, out, acc):
            r, c = (k // n_cols) * stride, (k % n_cols) * stride
            y = tf.cast(model(xp[:, r : r + size, c : c + size, :], training=False), tf.float32)
            pads = [[0, 0], [r, hp - r - size], [c, wp - c - size], [0, 0]]
            return k + 1, out + tf.pad(y * weight, pads), acc + tf.pad(weight, pads)

        n_windows = ((hp - size) // stride + 1) * n_cols
        _, out, acc = tf.while_loop(
            lambda k, *_: k < n_windows, add_window, (0, tf.zeros_like(xp), tf.zeros([1, hp, wp, 1], tf.float32))
        )
        y = (out / acc)[:, top : top + h, left : left + w, :]
        return tf.clip_by_value(y, -1.0, 1.0)

    serve = serve_tiled if tiled else serve_resized

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
    archive.write_out(str(tmp), verbose=False)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def export_models(
    g_src2ct,
    g_ct2src,
    model_dir,
    task: str,
    image_size: int,
    step: int,
    ct_value_range,
    fingerprint: str = "",
    tiled: bool = False,
) -> dict:
    """Export both generators to ``model_dir/{src}2ct`` and ``model_dir/ct2{src}`` plus ``manifest.json``.

    ``tiled`` (patch-trained models): translate at the input's resolution in overlapping windows.
    """
    src = TASKS[task]
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    names = {"to_ct": f"{src}2ct", "from_ct": f"ct2{src}"}
    export_generator(g_src2ct, model_dir / names["to_ct"], image_size, tiled)
    export_generator(g_ct2src, model_dir / names["from_ct"], image_size, tiled)
    lo, hi = (float(v) for v in ct_value_range)
    how = (
        f"resized internally to {image_size}x{image_size} and back"
        if not tiled
        else f"translated at its own resolution in overlapping {image_size}x{image_size} windows (the training "
        "patch size) at half-window steps, blended with a Hann window"
    )
    io_doc = (
        "serve(x): x float32 [batch, H, W, 1] scaled to [-1, 1] like the TFRecord 'image' feature; "
        f"{how}; returns [batch, H, W, 1] in [-1, 1]"
    )
    manifest = {
        "task": task,
        "source_modality": src,
        "image_size": int(image_size),
        "patches": bool(tiled),
        "step": int(step),
        "fingerprint": fingerprint,
        "ct_value_range": [lo, hi],
        "ct_unit": "HU",
        "to_hu": "HU = ct_value_range[0] + (y + 1) / 2 * (ct_value_range[1] - ct_value_range[0])",
        "generators": {
            "to_ct": {"path": names["to_ct"], "input": src, "output": "ct", "endpoint": "serve", "doc": io_doc},
            "from_ct": {"path": names["from_ct"], "input": "ct", "output": src, "endpoint": "serve", "doc": io_doc},
        },
        "load_with": "tf.saved_model.load(path).serve(x)  or  keras.layers.TFSMLayer(path, call_endpoint='serve')",
    }
    tmp = model_dir / "manifest.json.partial"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, model_dir / "manifest.json")
    return manifest


def load_generator(path):
    """Load an exported generator; return ``f(np.ndarray [B, H, W, 1]) -> np.ndarray`` (float32)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))

    def run(x, batch_size: int = 8):
        x = np.asarray(x, np.float32)
        outs = [loaded.serve(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros_like(x)

    run.module = loaded
    return run


def load_manifest(model_dir) -> dict:
    return json.loads((Path(model_dir) / "manifest.json").read_text())


def generator_path(model_dir, direction: str) -> Path:
    """``direction``: ``"to_ct"`` or ``"from_ct"``."""
    manifest = load_manifest(model_dir)
    return Path(model_dir) / manifest["generators"][direction]["path"]


# ----------------------------------------------------------------------------- the run


def configure_tensorflow(threads: int | None = None) -> list:
    """Set CPU thread pools (before any op runs) and GPU memory growth; return the GPUs seen."""
    import tensorflow as tf

    if threads:
        try:
            avail = len(os.sched_getaffinity(0))
        except AttributeError:
            avail = os.cpu_count() or 1
        n = max(1, min(int(threads), avail))
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
        except RuntimeError:  # runtime already initialised (e.g. in tests)
            pass
    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:
            pass
    return gpus


def _summary_metadata(plugin: str, description: str = ""):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin, content=b""),
        summary_description=description,
    )


def tb_scalar(tag: str, value, step: int) -> None:
    """A TensorBoard scalar; written with core TF ops so the ``tensorboard`` package is optional."""
    import tensorflow as tf

    tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=_summary_metadata("scalars"))


def tb_images(tag: str, images, step: int, max_outputs: int = 3) -> None:
    """TensorBoard images from float [B, H, W, 1] in [0, 1] (same format as ``tf.summary.image``)."""
    import tensorflow as tf

    images = tf.image.convert_image_dtype(
        tf.clip_by_value(tf.cast(images[:max_outputs], tf.float32), 0.0, 1.0), tf.uint8
    )
    pngs = tf.map_fn(tf.image.encode_png, images, fn_output_signature=tf.string)
    dims = tf.strings.as_string(tf.shape(images)[1:3])
    tensor = tf.concat([tf.stack([dims[1], dims[0]]), pngs], axis=0)  # width, height, png...
    tf.summary.write(tag, tensor, step=step, metadata=_summary_metadata("images"))


def _fmt_losses(losses: dict, src: str) -> str:
    names = {
        "g_adv_ct": f"G_{src}2ct_adv",
        "g_adv_src": f"G_ct2{src}_adv",
        "cycle_src": f"cycle_{src}",
        "cycle_ct": "cycle_ct",
        "identity": "identity",
        "outline": "outline",
        "structure": "structure",
        "perceptual": "perceptual",
        "vgg_content": "vgg_content",
        "vgg_style": "vgg_style",
        "g_total": "G_total",
        "d_ct": "D_ct",
        "d_src": f"D_{src}",
    }
    return " ".join(f"{names.get(k, k)}={v:.4f}" for k, v in losses.items())


def _ct_value_range(ct_path):
    from medcyclegan.io.tfrecords import read_dataset

    for e in read_dataset(ct_path).take(1):
        return float(e["value_lo"].numpy()), float(e["value_hi"].numpy())
    raise ValueError(f"no CT slices in {ct_path}")


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
) -> dict:
    """Train (or resume) one task and export both generators; return the summary dict.

    ``stop_after``: end the run after that many steps *without* a final checkpoint or export
    (simulates a killed job; for tests). ``cfg`` is a merged per-task config (:func:`task_config`).
    """
    import keras
    import tensorflow as tf

    gpus = configure_tensorflow(threads)
    src = TASKS[task]
    cfg = dict(cfg)
    log.info(
        "task %s: %s <-> ct; TensorFlow %s, Keras %s; GPUs: %s",
        task,
        src,
        tf.__version__,
        keras.__version__,
        [g.name for g in gpus] or "none (CPU)",
    )
    keras.utils.set_random_seed(int(cfg["seed"]))
    trainer = CycleGANTrainer(cfg)
    fp = run_fingerprint(cfg, {"src_train": src_train, "ct_train": ct_train}, trainer.architecture_hash())
    ckdir = prepare_checkpoint_dir(checkpoint_dir, fp)
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(ckdir), max_to_keep=int(cfg["keep_checkpoints"]))
    if manager.latest_checkpoint:
        trainer.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        start = int(trainer.step.numpy())
        log.info("resuming from step %d (checkpoint %s)", start, manager.latest_checkpoint)
    else:
        start = 0
        log.info("no checkpoint in %s: starting from step 0 (fingerprint %s)", ckdir, fp["fingerprint"])
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

    writer = tf.summary.create_file_writer(str(tensorboard_dir)) if tensorboard_dir else None
    # a resumed run reshuffles with a different seed instead of replaying the first steps' order
    data = iter(unpaired_dataset(src_train, ct_train, cfg, seed=int(cfg["seed"]) + start))
    log_every = max(1, int(cfg["log_every"]))
    ck_every = max(1, int(cfg["checkpoint_every"]))
    t_run = time.perf_counter()
    t_window, n_window = time.perf_counter(), 0
    first_step_s = None
    acc: dict = {}
    last_losses: dict = {}
    step = start
    last_saved = start if manager.latest_checkpoint else -1
    killed = False
    while step < total:
        if stop_after is not None and step - start >= stop_after:
            killed = True
            break
        src_b, ct_b = next(data)
        t0 = time.perf_counter()
        losses = trainer.train_step(src_b, ct_b)
        losses = {k: float(v) for k, v in losses.items()}
        step = int(trainer.step.numpy())
        if first_step_s is None:
            first_step_s = time.perf_counter() - t0
            log.info("first step (graph tracing included) took %.1f s", first_step_s)
            t_window, n_window = time.perf_counter(), 0
        else:
            n_window += 1
        if not all(np.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {losses}")
        for k, v in losses.items():
            acc.setdefault(k, []).append(v)
        if step % log_every == 0 or step == total:
            mean = {k: float(np.mean(v)) for k, v in acc.items()}
            last_losses = mean
            rate = n_window / max(time.perf_counter() - t_window, 1e-9) if n_window else float("nan")
            lr = trainer.learning_rate()
            eta = (total - step) / rate if rate and np.isfinite(rate) and rate > 0 else float("nan")
            log.info(
                "step %d/%d %s lr=%.3g %.2f steps/s eta %.0f s", step, total, _fmt_losses(mean, src), lr, rate, eta
            )
            if writer is not None:
                with writer.as_default():
                    for k, v in mean.items():
                        tb_scalar(f"loss/{k}", v, step)
                    tb_scalar("learning_rate", lr, step)
                    if np.isfinite(rate):
                        tb_scalar("steps_per_second", rate, step)
            acc = {}
            t_window, n_window = time.perf_counter(), 0
        if step % ck_every == 0 or step == total:
            path = manager.save(checkpoint_number=step)
            last_saved = step
            log.info("checkpoint %s", path)
            if writer is not None and cfg.get("tensorboard_images", True):
                with writer.as_default():
                    g_src2ct, g_ct2src = trainer.export_generators()
                    fake_ct = tf.cast(g_src2ct(src_b, training=False), tf.float32)
                    fake_src = tf.cast(g_ct2src(ct_b, training=False), tf.float32)
                    grid = tf.concat([src_b, fake_ct, ct_b, fake_src], axis=2)
                    tb_images(f"{src}_to_ct_and_back/{src}|{src}2ct|ct|ct2{src}", (grid + 1) / 2, step, max_outputs=2)
    run_s = time.perf_counter() - t_run
    steps_run = step - start
    if writer is not None:
        writer.flush()
    if killed:
        log.info("stopped after %d steps (stop_after) without final checkpoint/export", steps_run)
        return {"stopped_at": step, "resumed_from": start}
    if last_saved != step:
        manager.save(checkpoint_number=step)

    lo, hi = _ct_value_range(ct_train)
    t_exp = time.perf_counter()
    manifest = export_models(
        *trainer.export_generators(),
        model_dir,
        task,
        cfg["image_size"],
        step,
        (lo, hi),
        fingerprint=fp["fingerprint"],
        tiled=bool(cfg.get("patches")),
    )
    export_s = time.perf_counter() - t_exp
    names = {k: v["path"] for k, v in manifest["generators"].items()}
    rate = steps_run / run_s if steps_run else None
    steady = (steps_run - 1) / (run_s - first_step_s) if first_step_s is not None and steps_run > 1 else None
    summary = {
        "task": task,
        "source_modality": src,
        "steps": total,
        "resumed_from": start,
        "steps_this_run": steps_run,
        "train_wall_s": round(run_s, 2),
        "first_step_s": round(first_step_s, 2) if first_step_s is not None else None,
        "steps_per_s": round(steady, 4) if steady else (round(rate, 4) if rate else None),
        "export_s": round(export_s, 2),
        "final_losses": last_losses,
        "learning_rate_final": trainer.learning_rate(),
        "parameters": n_params,
        "precision": trainer.policy,
        "devices": [g.name for g in gpus] or ["CPU"],
        "fingerprint": fp["fingerprint"],
        "checkpoint_dir": str(ckdir),
        "config": training_only(cfg),
    }
    summary_path = Path(summary_path)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2))
    log.info(
        "done: %d steps this run (%.1f s), exported %s and %s (%.1f s)",
        steps_run,
        run_s,
        names["to_ct"],
        names["from_ct"],
        export_s,
    )
    return summary

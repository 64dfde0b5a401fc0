"""The CycleGAN trainer: the four networks, two optimisers, two image pools and the train step.

Everything that a resumed run must continue exactly is tracked by one ``tf.train.Checkpoint``
(:attr:`CycleGANTrainer.checkpoint`): weights, batch-norm statistics, the generators' weight
averages, optimiser moments and iteration counters, the image pools and their RNG, the step.

Several devices (``strategy``, a ``tf.distribute.MirroredStrategy`` from
:func:`medcyclegan.training.distribute.make_strategy`): the variables are mirrored on every
replica, each global batch is split into one equal shard per replica, each replica's losses are
means over its shard and divided by the number of replicas for the gradients (Keras sums the
replicas' gradients), so one step applies the gradient of the global-batch mean; the reported
losses are the replicas' (unscaled) means averaged, i.e. the global-batch means. Batch norm is
synchronised over the replicas (the statistics of the global batch); instance norm is
per image and needs nothing. Each replica keeps its own image pools
(:class:`~medcyclegan.training.distribute.ReplicaImagePools`). Without a strategy (TensorFlow's
default one) the trainer is the single-device one, unchanged.

2.5D context (``training.context_slices`` = k > 0): both batches are stacks [B, S, S, 2k + 1]
(each slice with its k neighbours on each side, the slice itself in channel k). ``g_src2ct``
takes a stack and outputs one CT slice; ``g_ct2src`` and the discriminators stay one slice.
Source cycle: source stack -> G -> fake CT -> F -> the source centre. CT cycle: F translates each
of the CT stack's 2k + 1 slices (folded into the batch) into a fake source stack -> G -> the CT
centre. Identity: G(CT stack) vs the CT centre, F(source centre) vs itself. Adversarial, outline,
structure, perceptual and VGG terms, the discriminators and the image pools use centre slices.
With k = 0 this is the one-slice computation, op for op.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def precision_policy(cfg: dict) -> str:
    """The Keras mixed-precision policy of ``training.mixed_precision``."""
    mp = cfg.get("mixed_precision", False)
    if mp is True or mp == "float16":
        return "mixed_float16"
    if mp == "bfloat16":
        return "mixed_bfloat16"
    return "float32"


def _build_models(cfg: dict, policy: str, channels: int, sync_batch_norm: bool = False) -> dict:
    """The four networks under the ``policy`` (the global policy is float32 again afterwards)."""
    import keras

    from medcyclegan.gan.models import build_models

    keras.mixed_precision.set_global_policy(policy)
    try:
        return build_models(cfg, channels=channels, sync_batch_norm=sync_batch_norm)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _agree_on_overflow(opt, grads):
    """A replica's gradients, made non-finite when any replica's are (``LossScaleOptimizer``).

    Keras's ``LossScaleOptimizer`` decides whether a step overflowed from replica 0's gradients
    alone (``_tf_apply`` in keras/src/optimizers/loss_scale_optimizer.py takes the first replica's
    ``check_finite``; the replicas' gradients are summed only later, by the inner optimiser):
    without this, an overflow on another replica would be applied instead of skipped.
    """
    import tensorflow as tf

    bad = tf.cast(tf.logical_not(opt.check_finite(grads)), tf.float32)
    bad = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, bad)
    return [None if g is None else tf.where(bad > 0, tf.constant(float("nan"), g.dtype), g) for g in grads]


class CycleGANTrainer:
    """The four networks, two optimisers, two image pools and the train step.

    Network names: ``g_src2ct`` (source -> CT), ``g_ct2src``, ``d_ct``, ``d_src``.

    ``strategy``: a ``tf.distribute.Strategy`` (default: TensorFlow's current one, i.e. one
    device); everything but the image pools is created in its scope (see the module docstring).
    ``cfg['batch_size']`` must be divisible by its number of replicas.
    """

    def __init__(self, cfg: dict, channels: int = 1, strategy=None):
        import tensorflow as tf

        from medcyclegan.gan import losses
        from medcyclegan.training import distribute

        self.cfg = cfg
        self.context = int(cfg.get("context_slices", 0))  # 2.5D context: k neighbours on each side
        self.strategy = strategy if strategy is not None else tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.distributed = distribute.is_distributed(self.strategy)
        distribute.check_batch_size(cfg["batch_size"], self.replicas)
        self.policy = precision_policy(cfg)
        with self.strategy.scope():
            self.models = _build_models(cfg, self.policy, channels, sync_batch_norm=self.replicas > 1)
            self.g_src2ct = self.models["g_src2ct"]
            self.g_ct2src = self.models["g_ct2src"]
            self.d_ct = self.models["d_ct"]
            self.d_src = self.models["d_src"]
            self.g_vars = self.g_src2ct.trainable_variables + self.g_ct2src.trainable_variables
            self.d_vars = self.d_ct.trainable_variables + self.d_src.trainable_variables
            self.opt_g = self._adam()
            self.opt_d = self._adam()
            self.opt_g.build(self.g_vars)
            self.opt_d.build(self.d_vars)

        # outside the strategy's scope: plain variables, one pool per replica on its device
        shape = (cfg["image_size"], cfg["image_size"], channels)
        self.pool_ct = distribute.image_pool(cfg["pool_size"], shape, cfg["seed"] + 1, self.strategy, "pool_ct")
        self.pool_src = distribute.image_pool(cfg["pool_size"], shape, cfg["seed"] + 2, self.strategy, "pool_src")

        with self.strategy.scope():
            self._build_rest(cfg, channels, losses)
        self.train_step = tf.function(self._distributed_train_step if self.distributed else self._train_step)

    def _build_rest(self, cfg: dict, channels: int, losses) -> None:
        """The step counter, VGG loss, weight averages and the checkpoint (in the strategy's scope)."""
        import tensorflow as tf

        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

        self.adv = cfg["adversarial_loss"]
        self.vgg = losses.VGGLoss(cfg["vgg_weights"], cfg["image_size"]) if cfg.get("vgg_weights") else None

        # exponential moving average of the generators' weights (what is exported when enabled)
        self.ema_decay = float(cfg.get("ema_decay", 0.0))
        self.ema = self._ema_twins(channels) if self.ema_decay > 0 else {}
        # the domains' running depth profiles (target of the depth-profile loss)
        self.profiles = {}
        if float(cfg.get("depth_profile_weight", 0.0)) > 0:
            self.profiles = {
                name: self._profile_variables(name, int(cfg["depth_profile_rings"])) for name in ("ct", "src")
            }
        self.checkpoint = tf.train.Checkpoint(
            **{f"profile_{k}_{i}": v for k, pair in self.profiles.items() for i, v in enumerate(pair)},
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

    @staticmethod
    def _profile_variables(name: str, n_rings: int):
        """(running mean profile, 1 where a ring has been seen) of one domain, mean over replicas."""
        import tensorflow as tf

        def var(suffix):
            return tf.Variable(
                tf.zeros([n_rings]),
                trainable=False,
                name=f"profile_{name}_{suffix}",
                aggregation=tf.VariableAggregation.MEAN,
            )

        return var("mean"), var("seen")

    def _track_profile(self, name: str, profile, weight):
        """Fold a real batch's depth profile into the domain's running mean; return the mean."""
        import tensorflow as tf

        mean, seen = self.profiles[name]
        decay = float(self.cfg["depth_profile_decay"])
        present = tf.cast(weight > 0.5, tf.float32)
        blended = tf.where(seen > 0, decay * mean + (1.0 - decay) * profile, profile)
        mean.assign(tf.where(present > 0, blended, mean))
        seen.assign(tf.maximum(seen, present))
        return tf.stop_gradient(tf.identity(mean))

    def _depth_profile_loss(self, src, ct, fake_ct, fake_src):
        """Each translation's depth profile (rings of its input's outline) against its target domain's."""
        import tensorflow as tf

        from medcyclegan.gan import losses as L

        n = int(self.cfg["depth_profile_rings"])
        src_rings = tf.stop_gradient(L.depth_rings(src, n))
        ct_rings = tf.stop_gradient(L.depth_rings(ct, n))
        target_ct = self._track_profile("ct", *L.depth_profile(ct, ct_rings))
        target_src = self._track_profile("src", *L.depth_profile(src, src_rings))
        fake_ct_profile, src_weight = L.depth_profile(fake_ct, src_rings)
        fake_src_profile, ct_weight = L.depth_profile(fake_src, ct_rings)
        return L.depth_profile_loss(fake_ct_profile, target_ct, src_weight) + L.depth_profile_loss(
            fake_src_profile, target_src, ct_weight
        )

    def _adam(self):
        import keras

        from medcyclegan.gan import schedules

        cfg = self.cfg
        opt = keras.optimizers.Adam(
            learning_rate=schedules.from_config(cfg), beta_1=cfg["beta_1"], beta_2=cfg["beta_2"]
        )
        if self.policy == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def _ema_twins(self, channels: int) -> dict:
        """Copies of the two generators that will hold their weights' moving averages."""
        twins = _build_models(self.cfg, self.policy, channels, sync_batch_norm=self.replicas > 1)
        ema = {}
        for name in ("g_src2ct", "g_ct2src"):
            twins[name].set_weights(self.models[name].get_weights())
            ema[name] = twins[name]
        return ema

    def architecture_hash(self) -> str:
        """Hash of the four networks' Keras configs (changes with any architecture change).

        Not with the number of replicas: synchronised batch norm (several replicas) hashes as the
        plain one, so a run may resume on another number of devices.
        """
        configs = [
            self.models[k].to_json().replace('"synchronized": true', '"synchronized": false')
            for k in sorted(self.models)
        ]
        blob = json.dumps(configs + [self.policy])
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
            # one pool per replica (ReplicaImagePools): replica 0 under the single-device names
            for r, replica in enumerate(getattr(pool, "replicas", [pool])):
                prefix = f"{name}_replica{r}" if r else name
                for v in replica.variables:
                    out[f"{prefix}/{v.name}"] = np.array(v.numpy())
                out[f"{prefix}/rng"] = np.array(replica.rng.state.numpy())
        for name, pair in self.profiles.items():
            for suffix, v in zip(("mean", "seen"), pair):
                out[f"profile_{name}/{suffix}"] = np.array(v.numpy())
        out["step"] = np.array(self.step.numpy())
        return out

    # -- the train step

    def _objective(self, opt, loss):
        """What the gradient is taken of; computed inside the tape (an op after it is not recorded).

        With several replicas each replica's loss (a mean over its shard) is divided by their
        number: Keras all-reduces the replicas' gradients with ``ReduceOp.SUM``
        (``TFOptimizer._all_reduce_sum_gradients`` in keras/src/backend/tensorflow/optimizer.py,
        called by ``_backend_update_step`` before ``update_step``), so the update is the gradient
        of the global-batch mean, as ``keras.losses.loss.scale_loss_for_distribution`` does for
        ``fit``. Then a ``LossScaleOptimizer``'s loss scale (a plain optimizer's ``scale_loss`` is
        the identity).
        """
        if self.replicas > 1:
            loss = loss * (1.0 / self.replicas)
        return opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss

    def _apply(self, opt, tape, objective, variables):
        grads = tape.gradient(objective, variables)
        if self.replicas > 1 and hasattr(opt, "check_finite"):
            grads = _agree_on_overflow(opt, grads)
        opt.apply_gradients(zip(grads, variables))

    def _train_step(self, src, ct):
        """One step on one device (TensorFlow's default strategy)."""
        out = self._replica_step(src, ct)
        self.step.assign_add(1)
        if self.ema:
            self._update_ema()
        return out

    def _distributed_train_step(self, src, ct):
        """One step of the global batch (``src``, ``ct``) split over the strategy's replicas."""
        import tensorflow as tf

        from medcyclegan.training.distribute import check_batch_size

        strategy, n = self.strategy, self.replicas
        batch = src.shape[0]
        if batch is None or ct.shape[0] != batch:
            raise ValueError(
                f"the train step needs source and CT batches of one static size, got {src.shape} and {ct.shape}"
            )
        check_batch_size(batch, n)
        per = batch // n

        def shards(x):
            return strategy.experimental_distribute_values_from_function(
                lambda ctx: x[ctx.replica_id_in_sync_group * per : (ctx.replica_id_in_sync_group + 1) * per]
            )

        per_replica = strategy.run(self._replica_step, args=(shards(src), shards(ct)))
        # once per global step, in the cross-replica context (updates every replica's copy)
        self.step.assign_add(1)
        if self.ema:
            self._update_ema()
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    def _centre(self, x):
        """The middle channel of a context stack [B, S, S, 2k + 1] (``x`` itself for k = 0)."""
        k = self.context
        return x if k == 0 else x[..., k : k + 1]

    def _per_slice(self, net, x):
        """``net`` on each channel of ``x`` [B, S, S, C] (folded into the batch) -> [B, S, S, C]."""
        import tensorflow as tf

        if self.context == 0:
            return net(x, training=True)
        b, h, w, c = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2], x.shape[-1]
        folded = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, h, w, 1])
        y = net(folded, training=True)
        return tf.transpose(tf.reshape(y, [b, c, h, w]), [0, 2, 3, 1])

    def _cycles(self, src, ct):
        """Both cycles' translations: ``(src centre, ct centre, fake_ct, rec_src, fake_src centre, rec_ct)``."""
        G, F = self.g_src2ct, self.g_ct2src
        fake_ct = G(src, training=True)
        rec_src = F(fake_ct, training=True)
        fake_src_stack = self._per_slice(F, ct)
        rec_ct = G(fake_src_stack, training=True)
        return self._centre(src), self._centre(ct), fake_ct, rec_src, self._centre(fake_src_stack), rec_ct

    def _replica_step(self, src, ct):
        """Losses (means over this replica's batch) and both optimisers' updates of one step.

        ``src``, ``ct``: [B, S, S, 2k + 1] context stacks (k = ``training.context_slices``)."""
        import tensorflow as tf

        from medcyclegan.gan import losses as L

        cfg = self.cfg
        lam = float(cfg["lambda_cycle"])
        lam_id = float(cfg["lambda_identity"]) * lam
        w_p = float(cfg["perceptual_weight"])
        G, F, D_ct, D_src = self.g_src2ct, self.g_ct2src, self.d_ct, self.d_src
        with tf.GradientTape(persistent=True) as tape:
            src_stack, ct_stack = src, ct
            src, ct, fake_ct, rec_src, fake_src, rec_ct = self._cycles(src_stack, ct_stack)  # centres from here

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

            w_d = float(cfg.get("depth_profile_weight", 0.0))
            if w_d > 0:
                depth = self._depth_profile_loss(src, ct, fake_ct, fake_src)
                g_total += w_d * depth
                out["depth_profile"] = depth

            w_s = float(cfg.get("structure_weight", 0.0))
            if w_s > 0:
                structure = L.structure_loss(src, fake_ct) + L.structure_loss(ct, fake_src)
                g_total += w_s * structure
                out["structure"] = structure

            if lam_id > 0:
                identity = L.l1(G(ct_stack, training=True), ct) + L.l1(F(src, training=True), src)
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
            g_objective = self._objective(self.opt_g, g_total)
            d_objective = self._objective(self.opt_d, d_total)

        self._apply(self.opt_g, tape, g_objective, self.g_vars)
        self._apply(self.opt_d, tape, d_objective, self.d_vars)
        del tape
        out.update({"g_total": g_total, "d_ct": d_ct_loss, "d_src": d_src_loss})
        return out

"""The CycleGAN trainer: the four networks, two optimisers, two image pools and the train step.

Everything that a resumed run must continue exactly is tracked by one ``tf.train.Checkpoint``
(:attr:`CycleGANTrainer.checkpoint`): weights, batch-norm statistics, the generators' weight
averages, optimiser moments and iteration counters, the image pools and their RNG, the step.
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


def _build_models(cfg: dict, policy: str, channels: int) -> dict:
    """The four networks under the ``policy`` (the global policy is float32 again afterwards)."""
    import keras

    from medcyclegan.gan.models import build_models

    keras.mixed_precision.set_global_policy(policy)
    try:
        return build_models(cfg, channels=channels)
    finally:
        keras.mixed_precision.set_global_policy("float32")


class CycleGANTrainer:
    """The four networks, two optimisers, two image pools and the train step.

    Network names: ``g_src2ct`` (source -> CT), ``g_ct2src``, ``d_ct``, ``d_src``.
    """

    def __init__(self, cfg: dict, channels: int = 1):
        import tensorflow as tf

        from medcyclegan.gan import losses
        from medcyclegan.gan.image_pool import ImagePool

        self.cfg = cfg
        self.policy = precision_policy(cfg)
        self.models = _build_models(cfg, self.policy, channels)
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

        shape = (cfg["image_size"], cfg["image_size"], channels)
        self.pool_ct = ImagePool(cfg["pool_size"], shape, seed=cfg["seed"] + 1, name="pool_ct")
        self.pool_src = ImagePool(cfg["pool_size"], shape, seed=cfg["seed"] + 2, name="pool_src")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

        self.adv = cfg["adversarial_loss"]
        self.vgg = losses.VGGLoss(cfg["vgg_weights"], cfg["image_size"]) if cfg.get("vgg_weights") else None

        # exponential moving average of the generators' weights (what is exported when enabled)
        self.ema_decay = float(cfg.get("ema_decay", 0.0))
        self.ema = self._ema_twins(channels) if self.ema_decay > 0 else {}
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
        twins = _build_models(self.cfg, self.policy, channels)
        ema = {}
        for name in ("g_src2ct", "g_ct2src"):
            twins[name].set_weights(self.models[name].get_weights())
            ema[name] = twins[name]
        return ema

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

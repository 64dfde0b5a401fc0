"""History of generated images for the discriminators (Shrivastava et al. 2017; reference CycleGAN).

Same rule as ``ImagePool`` of junyanz/pytorch-CycleGAN-and-pix2pix, per image of a batch:

* while fewer than ``pool_size`` images are stored, store the new image and return it;
* then, with probability 0.5, return a randomly chosen stored image and store the new one in
  its place; otherwise return the new image (the pool is unchanged).

Implemented with TensorFlow variables and a seeded ``tf.random.Generator`` so it runs inside a
``tf.function`` train step and its contents and random state are saved with the checkpoint.
``pool_size = 0`` disables the pool (the input is returned unchanged).
"""

from __future__ import annotations

import tensorflow as tf


class ImagePool(tf.Module):
    def __init__(self, pool_size: int, image_shape, seed: int = 0, dtype=tf.float32, name: str | None = None):
        super().__init__(name=name)
        self.pool_size = int(pool_size)
        self.image_shape = tuple(int(s) for s in image_shape)
        size = max(self.pool_size, 1)
        self.images = tf.Variable(tf.zeros((size, *self.image_shape), dtype), trainable=False, name="images")
        self.count = tf.Variable(0, dtype=tf.int32, trainable=False, name="count")
        self.rng = tf.random.Generator.from_seed(seed)

    def query(self, images: tf.Tensor) -> tf.Tensor:
        """Return a batch of the same shape: new images or, once full, older ones with p = 0.5."""
        if self.pool_size == 0:
            return images
        images = tf.convert_to_tensor(images, dtype=self.images.dtype)
        batch = images.shape[0]
        if batch is None:
            raise ValueError("ImagePool.query needs a static batch size")
        out = []
        for b in range(batch):  # static batch size: unrolled
            image = images[b]
            out.append(self._query_one(image))
        return tf.stack(out)

    def _query_one(self, image):
        # draw both random numbers unconditionally so the RNG stream does not depend on the branch
        p = self.rng.uniform([], dtype=tf.float32)
        idx = self.rng.uniform([], minval=0, maxval=self.pool_size, dtype=tf.int32)

        def fill():
            self.images[self.count].assign(image)
            self.count.assign_add(1)
            return tf.identity(image)

        def swap():
            old = tf.identity(self.images[idx])
            with tf.control_dependencies([old]):
                self.images[idx].assign(image)
            return old

        def keep():
            return tf.identity(image)

        def full():
            return tf.cond(p > 0.5, swap, keep)

        return tf.cond(self.count < self.pool_size, fill, full)

    @property
    def stored(self) -> tf.Tensor:
        """The images stored so far, [count, *image_shape]."""
        return self.images[: self.count]

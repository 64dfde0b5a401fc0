"""Files in and out: atomic writers (:mod:`~medcyclegan.io.atomic`: a killed job never leaves a
file that looks complete), the TFRecord schema (:mod:`~medcyclegan.io.tfrecords`), the per-volume
slice stacks (:mod:`~medcyclegan.io.slices`) and their rejection placeholders
(:mod:`~medcyclegan.io.placeholders`).

Bottom layer: imports only :mod:`medcyclegan.errors` and :mod:`medcyclegan.config`; every stage may import it.
"""

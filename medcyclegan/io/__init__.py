"""Files in and out: atomic writers (a killed job never leaves a file that looks complete), the
TFRecord schema, and the per-volume slice stacks with their rejection placeholders.

Bottom layer: imports only :mod:`medcyclegan.errors` and :mod:`medcyclegan.config`; every stage may import it.
"""

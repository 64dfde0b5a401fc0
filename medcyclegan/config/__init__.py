"""Configuration: the JSON-schema validation of ``config.yaml`` and the one place that turns the
validated config into the settings of each stage.

Bottom layer: imports nothing else of the package except :mod:`medcyclegan.errors`; every stage may import it.
"""

"""The MedCycleGAN networks and what trains them, without any data handling: CasNet generators
and PatchGAN discriminators, losses, the image pool and the learning-rate schedule.

Imports nothing else of the package except :mod:`medcyclegan.config`.
"""

"""MedCycleGAN: raw CQ500 CT and OASIS-3 MR/PET to TFRecords, and CasNet CycleGAN CT synthesis."""

__version__ = "0.1.0"

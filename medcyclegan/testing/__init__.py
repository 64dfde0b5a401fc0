"""Builders of small raw-data trees in the real CQ500 / OASIS-3 layouts, hostile inputs, and a
Snakemake runner, shared by the tests and the benchmarks.

Not used by the workflow itself.
"""

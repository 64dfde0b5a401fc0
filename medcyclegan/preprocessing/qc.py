"""Quality-control tables: the per-volume slice tables (why each slice was kept or dropped) joined
into one per modality. The preview picture is :mod:`medcyclegan.figures.qc_preview`."""

from __future__ import annotations

import pandas as pd


def concat_tables(paths) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

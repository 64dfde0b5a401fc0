"""Training curves for the report, read from the run's JSON-lines metrics."""

import json

from medcyclegan.figures.training_curves import plot_training_curves
from medcyclegan.training.curves import read_training_curves

RECORDS = [
    {"step": 2, "losses": {"G_mr2ct_adv": 0.5, "cycle_mr": 0.2, "G_total": 1.5, "D_ct": 0.25, "D_mr": 0.24},
     "lr": 0.0005, "steps_per_s": None},
    {"step": 4, "losses": {"G_mr2ct_adv": 0.4, "cycle_mr": 0.15, "G_total": 1.2, "D_ct": 0.23, "D_mr": 0.22},
     "lr": 0.00025, "steps_per_s": 3.1},
    {"step": 6, "losses": {"G_mr2ct_adv": 0.35, "cycle_mr": 0.12, "G_total": 1.1, "D_ct": 0.22, "D_mr": 0.21},
     "lr": 0.0, "steps_per_s": 3.2},
]  # fmt: skip


def test_read_and_plot(tmp_path):
    metrics = tmp_path / "training_metrics.jsonl"
    # a last line cut short (a killed job) is skipped
    metrics.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + '{"step": 8, "loss')
    series = read_training_curves(metrics)
    assert series["G_mr2ct_adv"] == [(2, 0.5), (4, 0.4), (6, 0.35)]
    assert series["cycle_mr"][-1] == (6, 0.12)
    assert series["lr"] == [(2, 0.0005), (4, 0.00025), (6, 0.0)]
    assert set(series) == {"G_mr2ct_adv", "cycle_mr", "G_total", "D_ct", "D_mr", "lr"}
    png = tmp_path / "curves.png"
    assert plot_training_curves(metrics, png, title="mr2ct") == series
    assert png.stat().st_size > 10_000


def test_no_logged_steps_still_gives_a_figure(tmp_path):
    metrics = tmp_path / "training_metrics.jsonl"
    metrics.write_text("")
    assert read_training_curves(metrics) == {}
    plot_training_curves(metrics, tmp_path / "c.png")
    assert (tmp_path / "c.png").exists()

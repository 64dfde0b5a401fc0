"""Training curves for the report, parsed from a training log."""

from medcyclegan.training.curves import parse_training_log, plot_training_curves

LOG = """\
2026-11-26 10:00:00 INFO medcyclegan.training: task mr2ct: mr <-> ct; TensorFlow 2.21
2026-11-26 10:00:05 INFO medcyclegan.training: step 2/6 G_mr2ct_adv=0.5000 cycle_mr=0.2000 G_total=1.5000 D_ct=0.2500 D_mr=0.2400 lr=0.0005 nan steps/s eta nan s
2026-11-26 10:00:06 INFO medcyclegan.training: step 4/6 G_mr2ct_adv=0.4000 cycle_mr=0.1500 G_total=1.2000 D_ct=0.2300 D_mr=0.2200 lr=0.00025 3.10 steps/s eta 1 s
2026-11-26 10:00:07 INFO medcyclegan.training: step 6/6 G_mr2ct_adv=0.3500 cycle_mr=1.2e-01 G_total=1.1000 D_ct=0.2200 D_mr=0.2100 lr=0 3.20 steps/s eta 0 s
2026-11-26 10:00:08 INFO medcyclegan.training: done: 6 steps this run (2.1 s)
"""


def test_parse_and_plot(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(LOG)
    series = parse_training_log(log)
    assert series["G_mr2ct_adv"] == [(2, 0.5), (4, 0.4), (6, 0.35)]
    assert series["cycle_mr"][-1] == (6, 0.12)
    assert series["lr"] == [(2, 0.0005), (4, 0.00025), (6, 0.0)]
    assert set(series) == {"G_mr2ct_adv", "cycle_mr", "G_total", "D_ct", "D_mr", "lr"}
    png = tmp_path / "curves.png"
    plot_training_curves(log, png, title="mr2ct")
    assert png.stat().st_size > 10_000


def test_empty_log_still_gives_a_figure(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("nothing here\n")
    assert parse_training_log(log) == {}
    plot_training_curves(log, tmp_path / "c.png")
    assert (tmp_path / "c.png").exists()

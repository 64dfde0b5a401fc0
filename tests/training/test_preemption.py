"""Training that a cluster can stop: SIGTERM / SIGUSR1 give a checkpoint of the current step and
a clear stop; the rerun resumes from exactly that step. And training.device never fails silently."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from medcyclegan.training.devices import DeviceError, select_devices
from medcyclegan.training.preemption import SignalWatch

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from medcyclegan.config.tasks import task_config
    from medcyclegan.training.loop import run_training
    from medcyclegan.training.preemption import Preempted
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    work, mr, ct, stop_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = task_config({"image_size": 32, "n_unets": 1, "unet_depth": 3, "unet_filters": 4, "disc_layers": 2,
                       "disc_filters": 4, "steps": 500, "lr_decay_steps": 2, "pool_size": 2, "shuffle_buffer": 8,
                       "log_every": 1, "checkpoint_every": 100000, "perceptual_weight": 0.0,
                       "tensorboard_images": False}, "mr2ct")
    try:
        summary = run_training(cfg, "mr2ct", mr, ct, work + "/model", work + "/summary.json", work + "/ck",
                               threads=1, stop_after=stop_after or None)
    except Preempted as err:
        print("PREEMPTED", err, file=sys.stderr)
        sys.exit(3)
    print("SUMMARY", json.dumps(summary))
    """
)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    from medcyclegan.testing.slice_phantoms import write_domain

    d = tmp_path_factory.mktemp("tfr")
    return write_domain(d / "mr.tfrecord", "mr"), write_domain(d / "ct.tfrecord", "ct")


def start(tmp_path, domains, stop_after=0):
    """Train 500 steps (``stop_after``: end after that many, as a killed job would) in a subprocess."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    log = open(tmp_path / f"log_{stop_after}.txt", "w")
    cmd = [sys.executable, str(script), str(tmp_path), *map(str, domains), str(stop_after)]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def wait_for(path, text, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {text!r}:\n{path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{path.read_text()[-3000:]}")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_signal_writes_a_checkpoint_of_the_current_step_and_the_rerun_resumes_there(tmp_path, domains, signame):
    proc = start(tmp_path, domains)  # periodic checkpoints never come (checkpoint_every 100000)
    log = tmp_path / "log_0.txt"
    wait_for(log, "step 3/500", proc)
    proc.send_signal(getattr(signal, signame))
    assert proc.wait(timeout=120) == 3, log.read_text()[-3000:]
    text = log.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("PREEMPTED"))
    stopped = int(line.split(" at step ")[1].split()[0])
    assert stopped >= 3 and f"{signame} received" in text and f"checkpoint of step {stopped} written" in text
    assert f"resume from step {stopped}" in line
    assert not (tmp_path / "summary.json").exists()  # no export: the job failed, the rule's outputs are absent
    # the rerun (the same command; here cut after 2 steps) starts from that exact step
    rerun = start(tmp_path, domains, stop_after=2)
    again_log = tmp_path / "log_2.txt"
    assert rerun.wait(timeout=300) == 0, again_log.read_text()[-3000:]
    again = again_log.read_text()
    assert f"resuming from step {stopped}" in again, again[-3000:]
    summary = json.loads(next(ln for ln in again.splitlines() if ln.startswith("SUMMARY")).split(" ", 1)[1])
    assert summary == {"stopped_at": stopped + 2, "resumed_from": stopped}


def test_signal_watch_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with SignalWatch() as watch:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert watch.received == "SIGUSR1"
    assert signal.getsignal(signal.SIGTERM) is before


def test_device_gpu_without_a_gpu_stops_with_what_to_check(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(DeviceError) as err:
        select_devices("gpu", [])
    message = str(err.value)
    assert "\n" not in message and ".[gpu]" in message and "nvidia-smi" in message
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=''"):
        select_devices("gpu", [])
    assert select_devices("auto", []) == [] and select_devices("cpu", []) == []
    with pytest.raises(ValueError, match="auto, cpu or gpu"):
        select_devices("tpu", [])

"""The Slurm profile on a real (single-node) Slurm: the demo's CT preprocessing to the TFRecords.

Every job of the DAG (demo CT studies, ingest, preprocess, split, TFRecords: 9 jobs) is submitted
with sbatch through `--profile profiles/slurm`; only the CT branch is run to keep the test short
(each Slurm job starts its own Python and Snakemake; MR and PET jobs are the same rules).

The fixture installs Slurm and munge from Debian packages when they are missing (needs root and
apt-get, as in .ci/run), writes a slurm.conf for this one machine (/etc/slurm/slurm.conf: the
plugin strips SLURM_* variables such as SLURM_CONF from the jobs, so srun inside a job reads the
global file; a previous file is put back afterwards), starts munged (unless it already runs),
slurmctld and slurmd on free ports, and stops every daemon it started when the module's tests
end, failed or not. A lock file serialises concurrent runs of this test on one machine.

There is no accounting (no slurmdbd), so Snakemake polls `squeue` (MinJobAge keeps finished jobs
visible there). The plugin falls back to `sacct`, which cannot answer here, for any status check
where `scontrol show config` takes over 10 s to report MinJobAge; the daemons run at a higher
CPU priority so that a busy machine does not trigger that (the snakemake call has a timeout).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from medcyclegan.testing.workflow import ROOT, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow, pytest.mark.timeout(1200)]

SLURM_PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
SNAKEMAKE_TIMEOUT_S = 900

# 2 subjects per modality: the smallest demo that still has a train and a test subject
SLURM_DEMO = {
    "demo": {"n_ct_subjects": 2, "n_mr_subjects": 2, "n_pet_subjects": 2, "ct_matrix": 128, "ct_thin_slice_mm": 1.25},
    "split": {"test_fraction": 0.5},
}


def _run(cmd, timeout=60, check=True, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_packages():
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "squeue", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Slurm is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], timeout=300, env=env)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *SLURM_PACKAGES], timeout=600, env=env)


def _munge_works() -> bool:
    try:
        cred = _run(["munge", "-n"], timeout=10, check=False)
        return cred.returncode == 0 and _run(["unmunge"], input=cred.stdout, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stop(pid_file: Path, name: str, log=print):
    """SIGTERM the daemon whose pid is in pid_file, SIGKILL it after 15 s."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        log(f"{name}: no pid file {pid_file}")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(150):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log(f"{name} (pid {pid}) stopped")
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    log(f"{name} (pid {pid}) killed")


def _slurm_conf(tmp: Path, host: str) -> str:
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024
    return f"""\
ClusterName=medcyclegantest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=600
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node Slurm: yields the environment (SLURM_CONF) to talk to it."""
    _ensure_packages()
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm of this test runs as root")
    tmp = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool"):
        (tmp / d).mkdir()
    host = socket.gethostname().split(".")[0]
    lock = open(Path("/tmp/medcyclegan-slurm-test.lock"), "w")  # noqa: SIM115 (held until teardown)
    fcntl.flock(lock, fcntl.LOCK_EX)
    conf = Path("/etc/slurm/slurm.conf")
    previous = conf.read_bytes() if conf.exists() else None
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(_slurm_conf(tmp, host))
    env = dict(os.environ)
    started = []  # (pid file, name), stopped in reverse order
    munge_pid = Path("/run/munge/munged.pid")
    try:
        if not _munge_works():
            _run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"])
            if not Path("/etc/munge/munge.key").exists():
                _run(["runuser", "-u", "munge", "--", "mungekey", "--create"])
            _run(["runuser", "-u", "munge", "--", "munged"], timeout=30)
            started.append((munge_pid, "munged"))
            for _ in range(50):
                if _munge_works():
                    break
                time.sleep(0.2)
            assert _munge_works(), "munged did not start"
        _run(["nice", "-n", "-10", "slurmctld"], env=env, timeout=30)
        started.append((tmp / "slurmctld.pid", "slurmctld"))
        _run(["nice", "-n", "-10", "slurmd"], env=env, timeout=30)
        started.append((tmp / "slurmd.pid", "slurmd"))
        state = ""
        for _ in range(120):
            state = _run(["sinfo", "-h", "-o", "%t"], env=env, check=False, timeout=10).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        assert state == "idle", f"node state {state!r}; slurmctld log:\n" + (tmp / "slurmctld.log").read_text()[-3000:]
        yield env
    finally:
        if started:
            _run(["scancel", "--user", "root"], env=env, check=False, timeout=30)
            time.sleep(1)
        for pid_file, name in reversed(started):
            _stop(pid_file, name)
        if previous is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_bytes(previous)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def test_slurm_profile_runs_demo_preprocessing(slurm, tmp_path):
    work = tmp_path / "work"
    write_config(work, SLURM_DEMO)
    targets = [f"results/tfrecords/ct/{s}.tfrecord" for s in ("train", "test")]
    cmd = [
        "timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT_S),
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
        "--configfile", str(work / "config.yaml"),
        "--profile", str(ROOT / "profiles" / "slurm"), "--workflow-profile", "none",
        # test overrides: this cluster's partition, and no accounting (status from squeue)
        "--default-resources", "slurm_partition=debug",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
        "--jobs", "4",
        *targets,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=slurm, cwd=work, timeout=SNAKEMAKE_TIMEOUT_S + 60)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake on Slurm failed ({proc.returncode}) after {elapsed:.0f} s:\n{out[-6000:]}"
    for t in targets:
        assert (work / t).stat().st_size > 0, t

    # every job went through sbatch: the log names its Slurm job id, and squeue still knows it
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    n_jobs = len(re.findall(r"^\s*jobid: \d+", out, flags=re.M)) or len(submitted)
    print(
        f"{len(submitted)} jobs ran on Slurm in {elapsed:.0f} s; Slurm job ids: {sorted(submitted.values(), key=int)}"
    )
    assert len(submitted) >= 2 * 3 + 1 + 2, out[-4000:]  # demo + ingest + preprocess per study, split, tfrecords
    assert len(submitted) == n_jobs, f"{n_jobs} jobs but {len(submitted)} Slurm submissions"
    queue = _run(["squeue", "-h", "-t", "all", "-o", "%i %T %j"], env=slurm).stdout
    known = {line.split()[0]: line.split()[1] for line in queue.splitlines() if line.strip()}
    for job_id in submitted.values():
        assert known.get(job_id) == "COMPLETED", f"Slurm job {job_id}: {known.get(job_id)}\n{queue}"

    # the profile's per-rule resources reached sbatch (e.g. ingest: 2 CPUs)
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    ingest_cpus = profile["set-resources"]["ingest"]["cpus_per_task"]
    detail = _run(["scontrol", "show", "job", "-o"], env=slurm, check=False).stdout
    ingest_jobs = [line for line in detail.splitlines() if "ingest" in line]
    assert ingest_jobs and all(f"NumCPUs={ingest_cpus}" in line for line in ingest_jobs), detail[-3000:]

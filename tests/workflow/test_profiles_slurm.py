"""The Slurm profile on a real (single-node) Slurm: the demo's CT preprocessing to the TFRecords.

Every job of the DAG (3 demo CT studies, 3 ingest, 3 preprocess, split, 2 TFRecords: 12 jobs) is
submitted with sbatch through `--profile profiles/slurm`; only the CT branch is run to keep the
test short (each Slurm job starts its own Python and Snakemake; MR and PET jobs are the same
rules). The per-volume rules are a job group ("per_volume"): with `--group-components
per_volume=2` the 6 ingest/preprocess jobs of the 3 studies go to Slurm as 2 group jobs (2 + 1
studies), so Snakemake submits 8 Slurm jobs instead of 12, each group with the CPUs, memory and
time limit Snakemake computes for it (layers that fit `--cores`, runtimes summed over layers).
`test_slurm_profile_groups_per_volume_jobs` checks the grouping in a dry run, without Slurm.

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
import math
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

from medcyclegan.config import job_resources
from medcyclegan.testing.workflow import ROOT, write_config

SLURM_PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
SNAKEMAKE_TIMEOUT_S = 900
PROFILE = ROOT / "profiles" / "slurm"

# 3 CT studies (2 subjects of MR and PET: the smallest demo that still has a train and a test
# subject); 3 studies in groups of 2 studies: one full group and a partial one
N_CT = 3
GROUP_VOLUMES = 2
SLURM_DEMO = {
    "demo": {
        "n_ct_subjects": N_CT,
        "n_mr_subjects": 2,
        "n_pet_subjects": 2,
        "ct_matrix": 128,
        "ct_thin_slice_mm": 1.25,
    },
    "split": {"test_fraction": 0.5},
}
CLUSTER_CORES = 2  # --cores for this test's cluster: the CPUs a group job may ask for (a node may have only 2)


MEMORY_FLOOR_MB = {"ingest": job_resources.INGEST_FLOOR_MB, "preprocess_volume": job_resources.PREPROCESS_FLOOR_MB}


def _profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def _group_request(n_volumes: int, cores: int) -> tuple[int, int, int]:
    """(CPUs, minutes, MB) Snakemake asks for a per_volume group of n CT volumes (ingest, then
    preprocess_volume): each rule's jobs in layers of at most `cores` CPUs; CPUs and memory the
    largest layer, runtime the sum of the layers (GroupResources.basic_layered)."""
    res = _profile()["set-resources"]
    cpus = minutes = mem = 0
    for rule in ("ingest", "preprocess_volume"):
        per_layer = max(1, cores // res[rule]["cpus_per_task"])
        layer = min(per_layer, n_volumes)
        cpus = max(cpus, layer * res[rule]["cpus_per_task"])
        # memory follows the input (config.job_resources): the tiny test volumes get the floor
        mem = max(mem, layer * res[rule].get("mem_mb", MEMORY_FLOOR_MB[rule]))
        minutes += math.ceil(n_volumes / per_layer) * res[rule]["runtime"]
    return cpus, minutes, mem


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


def _group_jobs(out: str) -> int:
    return len(re.findall(r"\bGroup job per_volume\b", out))


def test_slurm_profile_groups_per_volume_jobs(tmp_path):
    """Dry runs (no Slurm needed): the Slurm profile puts the per-volume jobs of 50 volumes into one
    group job, `--group-components per_volume=N` changes that, and the jobs themselves (rules,
    counts) are those of a local dry run."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")  # the default demo: 6 volumes per modality

    def dry_run(*args):
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        stats = re.search(r"^Job stats:\n(.*?)^total\s+\d+", out, flags=re.M | re.S)
        assert stats, out[-3000:]
        return out, stats[0]

    local, local_stats = dry_run()  # the workflow profile: a local run
    slurm = ("--profile", str(PROFILE), "--workflow-profile", "none")
    grouped, grouped_stats = dry_run(*slurm)
    small, small_stats = dry_run(*slurm, "--group-components", "per_volume=5")
    assert _profile()["group-components"] == {"per_volume": 50}
    n_volumes = int(re.search(r"^ingest\s+(\d+)$", local_stats, flags=re.M)[1])
    assert 5 < n_volumes <= 50, local_stats  # config.yaml's demo: 18
    # a dry run shows groups (a local run does not use them): one per volume without group-components
    assert _group_jobs(local) == n_volumes
    assert _group_jobs(grouped) == 1, grouped[-3000:]
    assert _group_jobs(small) == math.ceil(n_volumes / 5), small[-3000:]
    assert grouped_stats == local_stats == small_stats


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_slurm_profile_runs_demo_preprocessing(slurm, tmp_path):
    work = tmp_path / "work"
    write_config(work, SLURM_DEMO)
    targets = [f"results/tfrecords/ct/{s}.tfrecord" for s in ("train", "test")]
    cmd = [
        "timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT_S),
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
        "--configfile", str(work / "config.yaml"),
        "--profile", str(PROFILE), "--workflow-profile", "none",
        *targets,  # before the flags that take several values
        # test overrides: this cluster's partition and CPUs, and no accounting (status from squeue)
        "--default-resources", "slurm_partition=debug", "--cores", str(CLUSTER_CORES),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
        "--jobs", "4",
        "--group-components", f"per_volume={GROUP_VOLUMES}",
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=slurm, cwd=work, timeout=SNAKEMAKE_TIMEOUT_S + 60)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake on Slurm failed ({proc.returncode}) after {elapsed:.0f} s:\n{out[-6000:]}"
    from medcyclegan import demo

    studies = demo.ct_study_ids(N_CT)
    outputs = [
        *targets,
        *(
            f"results/{kind}/ct/{s}.{ext}"
            for s in studies
            for kind, ext in [
                ("volumes", "nii.gz"),
                ("volumes", "json"),
                ("slices", "npz"),
                ("slices", "csv"),
                ("masks", "nii.gz"),
            ]
        ),
    ]
    for path in outputs:
        assert (work / path).stat().st_size > 0, path

    # every submission is in the log with its Slurm job id: a job by its number, a group job by
    # its UUID; 3 demo studies + 2 per_volume groups + split + 2 tfrecords = 8 (12 ungrouped)
    submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", out))
    groups = {job: sid for job, sid in submitted.items() if not job.isdigit()}
    n_jobs = len(re.findall(r"^\s*jobid: \d+", out, flags=re.M))
    n_groups = math.ceil(N_CT / GROUP_VOLUMES)
    print(
        f"{n_jobs} jobs ran on Slurm as {len(submitted)} Slurm jobs ({len(groups)} per_volume groups) in "
        f"{elapsed:.0f} s; Slurm job ids: {sorted(submitted.values(), key=int)}"
    )
    assert n_jobs == 3 * N_CT + 3, out[-4000:]  # demo, ingest, preprocess per study; split, 2 tfrecords
    assert len(groups) == _group_jobs(out) == n_groups == 2, out[-4000:]
    assert len(set(submitted.values())) == len(submitted) == n_jobs - 2 * N_CT + n_groups == 8, out[-4000:]

    # Slurm agrees: this run's jobs (its job name) are exactly those, all completed, and the
    # per-volume jobs went only as groups (the plugin's comment: rule_<group>_<rules>)
    queue = _run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%j|%k"], env=slurm).stdout
    rows = [line.split("|") for line in queue.splitlines() if line.strip()]
    run_name = {name for sid, _, name, _ in rows if sid in submitted.values()}
    assert len(run_name) == 1, queue
    ours = {sid: (state, comment) for sid, state, name, comment in rows if name in run_name}
    assert set(ours) == set(submitted.values()), f"{sorted(ours)} vs {sorted(submitted.values())}\n{queue}"
    assert all(state == "COMPLETED" for state, _ in ours.values()), queue
    comments = [comment for _, comment in ours.values()]
    assert sum(c == "rule_per_volume_ingest_preprocess_volume" for c in comments) == n_groups, comments
    assert not [c for c in comments if c.startswith(("rule_ingest", "rule_preprocess_volume"))], comments

    # what each group asked for: Snakemake's layering (CPUs and memory of the largest layer within
    # --cores, runtimes summed), e.g. 2 studies: 2 CPUs, 2 x 3 + 1 x 3 = 9 min, 2000 MB
    detail = _run(["scontrol", "show", "job", "-o"], env=slurm, check=False).stdout
    by_id = {m[1]: m[0] for m in re.finditer(r"JobId=(\d+) .*", detail)}

    def request(sid):
        line = by_id[sid]
        h, m, s = map(int, re.search(r"TimeLimit=(\d+):(\d+):(\d+)", line).groups())
        mem = int(re.search(r"MinMemoryNode=(\d+)M", line)[1])
        return int(re.search(r"NumCPUs=(\d+)", line)[1]), h * 60 + m + (s > 0), mem

    sizes = [GROUP_VOLUMES] * (N_CT // GROUP_VOLUMES) + [N_CT % GROUP_VOLUMES] * bool(N_CT % GROUP_VOLUMES)
    expected = sorted(_group_request(n, CLUSTER_CORES) for n in sizes)
    print(f"per_volume groups of {sizes} studies asked for (CPUs, minutes, MB): {expected}")
    assert sorted(request(sid) for sid in groups.values()) == expected, detail[-3000:]
    # and a single job gets its rule's profile resources (tfrecords: 30 min, 1500 MB, 1 CPU)
    tfrecords = _profile()["set-resources"]["tfrecords"]
    tf_ids = [sid for sid, (_, comment) in ours.items() if comment.startswith("rule_tfrecords")]
    assert len(tf_ids) == 2, comments
    for sid in tf_ids:
        assert request(sid) == (tfrecords["cpus_per_task"], tfrecords["runtime"], tfrecords["mem_mb"]), by_id[sid]

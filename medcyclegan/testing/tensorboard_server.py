"""Start the real ``tensorboard`` command on a log directory and ask its HTTP API what a person would see.

Event files existing on disk do not prove that the training can be watched: TensorBoard must parse them,
recognise each summary's plugin metadata and list the tags in its scalar and image dashboards. This module
runs the same command a user runs (on a free loopback port, output captured), waits for its HTTP server,
and reads the dashboards' own JSON endpoints (``/data/plugin/scalars/...`` and ``/data/plugin/images/...``,
as served by ``tensorboard/plugins/scalar/scalars_plugin.py`` and ``plugins/image/images_plugin.py``).

Not used by the workflow itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

#: no proxy for loopback requests, whatever ``http_proxy`` says
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tensorboard_executable() -> str | None:
    """The ``tensorboard`` script next to this Python (the venv's), else the one on ``PATH``, else None."""
    here = Path(sys.executable).with_name("tensorboard")
    return str(here) if here.is_file() else shutil.which("tensorboard")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """A running TensorBoard: its ``url``, its ``process`` and the scalar / image dashboards' data."""

    def __init__(self, process: subprocess.Popen, url: str, output_file) -> None:
        self.process = process
        self.url = url
        self._output_file = output_file

    def output(self) -> str:
        """Everything TensorBoard (and its data server) printed so far, stdout and stderr together."""
        self._output_file.flush()
        self._output_file.seek(0)
        return self._output_file.read().decode(errors="replace")

    def get(self, path: str, timeout_s: float = 10, **params) -> bytes:
        """The body of ``GET <url><path>?<params>``; an HTTP error is raised with TensorBoard's answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with _OPENER.open(f"{self.url}{path}{query}", timeout=timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"TensorBoard answered {e.code} to {path}{query}: {e.read()[:500]!r}") from e

    def get_json(self, path: str, **params):
        return json.loads(self.get(path, **params))

    def scalar_tags(self) -> dict[str, list[str]]:
        """``{run: [tag, ...]}`` as the Scalars dashboard lists them (the root of the logdir is run ``.``)."""
        return {run: sorted(tags) for run, tags in self.get_json("/data/plugin/scalars/tags").items()}

    def image_tags(self) -> dict[str, list[str]]:
        """``{run: [tag, ...]}`` as the Images dashboard lists them."""
        return {run: sorted(tags) for run, tags in self.get_json("/data/plugin/images/tags").items()}

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        """``[(step, value), ...]`` of one scalar series (the endpoint gives ``[wall_time, step, value]``)."""
        return [
            (int(step), float(value))
            for _, step, value in self.get_json("/data/plugin/scalars/scalars", run=run, tag=tag)
        ]

    def image_steps(self, run: str, tag: str, sample: int = 0) -> list[int]:
        """The steps at which an image ``sample`` (index within the batch) of this tag was written."""
        return [entry["step"] for entry in self.get_json("/data/plugin/images/images", run=run, tag=tag, sample=sample)]

    def image(self, run: str, tag: str, index: int = 0, sample: int = 0) -> bytes:
        """The encoded image (PNG for ``tf.summary.image``-style summaries) of the ``index``-th step written
        (negative counts from the last), ``sample``-th image of its batch, as the Images dashboard loads it."""
        entries = self.get_json("/data/plugin/images/images", run=run, tag=tag, sample=sample)
        if not entries:
            raise LookupError(f"no image sample {sample} for run={run!r} tag={tag!r}")
        query = urllib.parse.parse_qs(entries[index]["query"])
        return self.get("/data/plugin/images/individualImage", **{k: v[0] for k, v in query.items()})

    def wait_for_tags(
        self, scalars: Iterable[str] = (), images: Iterable[str] = (), run: str | None = None, timeout_s: float = 30
    ) -> None:
        """Wait until every tag is listed (in ``run``, or in any run): TensorBoard loads event files in the
        background, so right after startup its dashboards may still be empty. Raises ``TimeoutError`` naming
        the missing tags and what is listed, or ``RuntimeError`` if TensorBoard exits meanwhile."""
        wanted = {"scalars": set(scalars), "images": set(images)}
        deadline = time.monotonic() + timeout_s
        while True:
            listed = {"scalars": self.scalar_tags(), "images": self.image_tags()}
            missing = {
                kind: sorted(tags - {t for r, ts in listed[kind].items() if run in (None, r) for t in ts})
                for kind, tags in wanted.items()
            }
            missing = {kind: tags for kind, tags in missing.items() if tags}
            if not missing:
                return
            self._check_alive()
            if time.monotonic() > deadline:
                where = "any run" if run is None else f"run {run!r}"
                raise TimeoutError(
                    f"TensorBoard did not list {missing} in {where} within {timeout_s:g} s; it lists {listed}"
                )
            time.sleep(0.25)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"TensorBoard exited with {self.process.returncode}:\n{self.output()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, wait, SIGKILL; then anything left in its process group (its Rust data server normally exits
    by itself when TensorBoard closes its stdin)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def serve(
    logdir: Path | None = None,
    timeout_s: float = 90,
    command: list[str] | None = None,
    cwd: Path | None = None,
) -> Iterator[TensorBoardServer]:
    """Run ``tensorboard --logdir <logdir> --host 127.0.0.1 --port <free port>`` until the block ends.

    ``command`` replaces ``tensorboard --logdir <logdir>`` with an exact argv (e.g. the one a README shows,
    run in ``cwd``); a leading ``"tensorboard"`` means :func:`tensorboard_executable`. ``--host`` and
    ``--port`` are appended (argparse keeps the last). Yields once the HTTP server answers; raises
    ``RuntimeError`` with TensorBoard's output if it exits first or does not answer within ``timeout_s``.
    The process is always stopped on exit."""
    exe = tensorboard_executable()
    if command is None:
        if logdir is None:
            raise ValueError("serve() needs a logdir or a command")
        command = ["tensorboard", "--logdir", str(logdir)]
    if command[0] == "tensorboard":
        if exe is None:
            raise FileNotFoundError("no tensorboard executable next to sys.executable nor on PATH")
        command = [exe, *command[1:]]
    port = _free_port()
    argv = [*command, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        server = TensorBoardServer(process, f"http://127.0.0.1:{port}", out)
        try:
            _wait_until_up(server, timeout_s, argv)
            yield server
        finally:
            _stop(process)


def _wait_until_up(server: TensorBoardServer, timeout_s: float, argv: list[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        server._check_alive()
        with contextlib.suppress(OSError):  # refused / reset / timed out while it starts
            server.get("/data/runs", timeout_s=2)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{argv} did not answer within {timeout_s:g} s; its output:\n{server.output()}")
        time.sleep(0.2)

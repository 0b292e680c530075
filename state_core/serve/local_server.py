"""Start and stop the `tritonserver` binary that ships in the nvidia-pytriton wheel (development, tests).

That build has only the python backend, so local repositories are published with `backend="python"`
(the ONNX file runs through `model.py` + ONNX Runtime). The server listens on loopback only and is
stopped by pid. Environment it needs on pyenv/venv Pythons (see docs/serving.md):
  - a backend folder holding the python backend and the stub built for this Python version;
  - LD_LIBRARY_PATH with the wheel's vendored libs and this interpreter's LIBDIR, so the stub links
    the same libpython as the stdlib on sys.path;
  - PATH starting with this interpreter's bin folder, so the stub finds numpy and onnxruntime.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from state_core.errors import ServingError
from state_core.extras import require
from state_core.serve.local_view import build_local_view, needs_local_view
from state_core.serve.triton_config import CONFIG_FILE
from state_core.storage import is_gcs


log = logging.getLogger(__name__)

INSTALL_HINT = "pip install --no-deps nvidia-pytriton==0.7.0  (or `make serve-deps`)"


@dataclass(frozen=True)
class TritonInstall:
    """Paths inside the installed nvidia-pytriton wheel."""

    server_root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.server_root / "bin" / "tritonserver"

    def stub(self, python_version: str) -> Path:
        return self.server_root / "python_backend_stubs" / python_version / "triton_python_backend_stub"


@dataclass(frozen=True)
class LocalTriton:
    """A running server started by `start_server`."""

    pid: int
    host: str
    grpc_port: int
    http_port: int
    repository: str
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


def find_triton_install() -> TritonInstall:
    spec = find_spec("pytriton")  # locates the package without importing it (its deps need numpy<2)
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(f"the tritonserver binary is not installed; fix: {INSTALL_HINT}")
    package = Path(next(iter(spec.submodule_search_locations)))
    install = TritonInstall(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
    if not install.binary.is_file():
        raise ServingError(f"{install.binary} is missing; reinstall: {INSTALL_HINT}")
    return install


def prepare_backends(install: TritonInstall, work_dir: Path) -> Path:
    """A backend folder for this Python: links to the python backend plus the matching stub."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.stub(version)
    if not stub.is_file():
        raise ServingError(f"nvidia-pytriton has no python backend stub for Python {version} ({stub})")
    python_dir = work_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    sources = [*(install.server_root / "backends" / "python").glob("*.*"), stub]
    for source in sources:
        link = python_dir / source.name
        if not link.exists():
            link.symlink_to(source)
    return work_dir / "backends"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ServingError(
            f"host {host!r}: the local server listens on loopback only (use 127.0.0.1); "
            "serve production traffic from the Triton container instead"
        )


def server_environment(install: TritonInstall, repository: str, python_bin: Path | None = None) -> dict[str, str]:
    """`python_bin`: the bin folder of the environment the python-backend stubs use (default: this one)."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(install.libs), libdir, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(python_bin or Path(sys.executable).parent), env.get("PATH", "")])
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if is_gcs(repository) and emulator:
        env["CLOUD_STORAGE_EMULATOR_ENDPOINT"] = emulator  # Triton's name for the same setting
    return env


def check_repository(repository: str) -> None:
    """Fail fast (instead of after the ready timeout) on a repository Triton could not serve anything from."""
    if is_gcs(repository):
        from state_core.storage.gcs import gcs_client
        from state_core.storage.uris import split_gcs_uri

        bucket, prefix = split_gcs_uri(repository.rstrip("/") + "/")
        try:
            names = [b.name for b in gcs_client().list_blobs(bucket, prefix=prefix, max_results=1000)]
        except Exception as err:  # noqa: BLE001 - google-cloud-storage raises transport and API errors
            raise ServingError(
                f"model repository {repository} cannot be listed ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200] if str(err) else ''}); check the bucket name and "
                f"credentials"
            ) from None
        if not any(n.endswith("/" + CONFIG_FILE) for n in names):
            raise ServingError(
                f"model repository {repository} holds no <model>/{CONFIG_FILE}; publish a model first "
                f"(`state export triton`)"
            )
        return
    path = Path(repository)
    if path.exists() and not path.is_dir():
        raise ServingError(
            f"model repository {path} is a file, not a folder; pass the --repository folder of `state export triton`"
        )
    if not path.is_dir():
        raise ServingError(
            f"model repository {path.resolve()} does not exist; publish a model first (`state export triton`)"
        )
    if not any(path.glob(f"*/{CONFIG_FILE}")):
        raise ServingError(
            f"model repository {path} holds no <model>/{CONFIG_FILE}; publish a model first (`state export triton`)"
        )


def check_port_free(host: str, port: int, flag: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ServingError(
                f"port {host}:{port} is already in use; pass another {flag} (e.g. {flag} "
                f"{free_port(host)}) or stop what listens there"
            ) from None


def start_server(
    repository: str | Path,
    work_dir: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    grpc_port: int | None = None,
    http_port: int | None = None,
    ready_timeout_s: float = 90.0,
    poll_repository_s: int = 0,
    python_bin: Path | None = None,
) -> LocalTriton:
    """Start tritonserver on `repository` (local folder or gs://) and wait until every model is ready.

    `poll_repository_s > 0` makes the server pick up newly published versions by itself. A local
    repository published for production (onnxruntime) is served through a python-backend view.
    `work_dir` (default: a new temp folder) holds the backend links, the view and the server log.
    `python_bin` runs the python-backend models in another venv of this same interpreter (e.g. the
    serving image's ONNX Runtime and numpy 1.x; see tests/serve/test_serving_runtime.py).
    """
    _require_loopback(host)
    check_repository(str(repository))
    for port, flag in ((grpc_port, "--grpc-port"), (http_port, "--http-port")):
        if port:
            check_port_free(host, port, flag)
    install = find_triton_install()
    work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="state-serve-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    if is_gcs(str(repository)):
        repository = str(repository)
    else:
        local_repo = Path(repository).resolve()
        if not local_repo.is_dir():
            raise ServingError(
                f"model repository {local_repo} does not exist; publish a model first (`state export triton`)"
            )
        if needs_local_view(local_repo):
            local_repo = build_local_view(local_repo, Path(tempfile.mkdtemp(prefix="view-", dir=work_dir)))
        repository = str(local_repo)
    grpc_port = grpc_port or free_port(host)
    http_port = http_port or free_port(host)
    command = [
        str(install.binary),
        f"--model-repository={repository}",
        f"--backend-directory={prepare_backends(install, work_dir)}",
        f"--cache-directory={work_dir / 'caches'}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        "--allow-metrics=false",
        "--exit-on-error=false",
        "--log-verbose=0",
    ]
    if poll_repository_s > 0:
        command += ["--model-control-mode=poll", f"--repository-poll-secs={poll_repository_s}"]
    log_path = work_dir / f"tritonserver-{grpc_port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(install, repository, python_bin),
            start_new_session=True,
        )
    server = LocalTriton(process.pid, host, grpc_port, http_port, repository, log_path)
    try:
        wait_until_ready(server, ready_timeout_s, process)
    except ServingError:
        stop_server(server.pid)
        raise
    log.info("tritonserver pid %d serving %s on %s (log %s)", server.pid, repository, server.grpc_url, log_path)
    return server


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(server: LocalTriton, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Poll the server over gRPC until it and its models are ready."""
    grpcclient = require("tritonclient.grpc", "serve", "waiting for tritonserver")

    client = grpcclient.InferenceServerClient(server.grpc_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServingError(
                    f"tritonserver exited with status {process.returncode}; log {server.log_path}:\n"
                    f"{_log_tail(server.log_path)}"
                )
            try:
                if client.is_server_ready():
                    index = client.get_model_repository_index().models
                    if index and all(m.state == "READY" for m in index):
                        return
                    failed = [f"{m.name} v{m.version}: {m.reason}" for m in index if m.state == "UNAVAILABLE"]
                    if failed:
                        raise ServingError(f"models failed to load: {'; '.join(failed)}; log {server.log_path}")
            except grpcclient.InferenceServerException:
                pass
            time.sleep(0.25)
    finally:
        client.close()
    raise ServingError(
        f"tritonserver on {server.grpc_url} not ready after {timeout_s:.0f} s; log {server.log_path}:\n"
        f"{_log_tail(server.log_path)}"
    )


def server_command(pid: int) -> list[str] | None:
    """The command line of process `pid` (None when it does not exist or cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_started_server(pid: int) -> bool:
    """Stop `pid` only if it is a tritonserver serving a model repository (what `start_server` runs);
    False if no such process exists. Anything else is refused without a signal."""
    if pid <= 1:
        raise ServingError(f"pid {pid} is not a server process; give the pid printed by `state serve start`")
    command = server_command(pid)
    if command is None:
        if _alive(pid):
            raise ServingError(
                f"process {pid} cannot be inspected, so it is not signalled; stop it yourself if it is the server"
            )
        return False
    is_triton = (
        bool(command)
        and Path(command[0]).name == "tritonserver"
        and any(a.startswith("--model-repository=") for a in command)
    )
    if not is_triton:
        shown = " ".join(command)[:120] or "(no command line)"
        raise ServingError(
            f"process {pid} is not a tritonserver started by `state serve start` ({shown}); it was not signalled"
        )
    return stop_server(pid)


def stop_server(pid: int, timeout_s: float = 20.0) -> bool:
    """SIGTERM the server by pid, SIGKILL if it is still there after `timeout_s`; False if it was gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll for existence instead
            finished = 0 if _alive(pid) else pid
        if finished:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

"""`state serve` commands: run the local tritonserver on a model repository (loopback only)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TRITON_WHEEL = "nvidia-pytriton==0.7.0"


def _start(args: argparse.Namespace) -> int:
    from state_core.errors import ServingError
    from state_core.serve.local_server import start_server

    if args.pid_file and (Path(args.pid_file).is_dir() or not Path(args.pid_file).parent.is_dir()):
        raise ServingError(f"--pid-file {args.pid_file}: not a file in an existing folder")
    server = start_server(
        args.repository,
        args.work_dir,
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        poll_repository_s=args.poll_secs,
    )
    if args.pid_file:
        Path(args.pid_file).write_text(f"{server.pid}\n")
    print(
        f"tritonserver pid {server.pid}: gRPC {server.grpc_url}, HTTP {server.host}:{server.http_port}, "
        f"log {server.log_path}\nstop it with: state serve stop --pid {server.pid}"
    )
    return 0


def _read_pid_file(path: Path) -> int:
    from state_core.errors import ServingError

    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ServingError(
            f"--pid-file {path}: cannot be read ({getattr(err, 'strerror', None) or err}); pass the file "
            f"written by `state serve start --pid-file`, or --pid"
        ) from None
    if not text.isdigit():
        raise ServingError(
            f"--pid-file {path}: holds {text[:40]!r}, not a process id; pass the file written by "
            f"`state serve start --pid-file`, or --pid"
        )
    return int(text)


def _stop(args: argparse.Namespace) -> int:
    from state_core.errors import ServingError
    from state_core.serve.local_server import stop_started_server

    if args.pid is None and args.pid_file is None:
        raise ServingError("give --pid or --pid-file of the server to stop")
    pid = args.pid if args.pid is not None else _read_pid_file(Path(args.pid_file))
    # only a tritonserver is signalled: a stale pid file may name an unrelated process by now
    print(f"stopped {pid}" if stop_started_server(pid) else f"no process {pid}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from state_core.serve.client import TritonSTClient

    client = TritonSTClient(args.url, args.model_name)
    client.wait_until_ready(args.timeout)
    print(
        f"{args.model_name} ready at {args.url} (version {client.served_version()}, inputs {client.input_names}, "
        f"max_batch_size {client.max_batch_size})"
    )
    return 0


def _setup(args: argparse.Namespace) -> int:
    # --no-deps: the wheel pins numpy<2, but we only use its tritonserver binary, whose python
    # backend stub runs in this environment (numpy 2 works through DLPack, see docs/serving.md).
    return subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", TRITON_WHEEL])


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="serve_command", metavar="{start,stop,status,setup}")
    parser.set_defaults(func=lambda args: parser.print_help())

    start = sub.add_parser("start", help="start tritonserver on a repository (local folder or gs://) in the background")
    start.add_argument("--repository", required=True)
    start.add_argument("--work-dir", default=None, help="folder for the log and backend links (default: a temp folder)")
    start.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    start.add_argument("--grpc-port", type=int, default=8001)
    start.add_argument("--http-port", type=int, default=8000)
    start.add_argument("--poll-secs", type=int, default=0, help="re-read the repository every N s (0: never)")
    start.add_argument("--pid-file", default=None, help="write the server pid here")
    start.set_defaults(func=_start)

    stop = sub.add_parser("stop", help="stop a server started by `state serve start`")
    stop.add_argument("--pid", type=int, default=None)
    stop.add_argument("--pid-file", default=None)
    stop.set_defaults(func=_stop)

    status = sub.add_parser("status", help="check that a server answers and the model is ready")
    status.add_argument("--url", default="127.0.0.1:8001", help="gRPC HOST:PORT")
    status.add_argument("--model-name", default="state_st")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(func=_status)

    setup = sub.add_parser("setup", help=f"install the tritonserver binary ({TRITON_WHEEL}, --no-deps) into this env")
    setup.set_defaults(func=_setup)

"""`state export` commands: `onnx` (run folder -> model.onnx + metadata.json), `triton` (publish a
version into a model repository), `rollback` (serve an older kept version)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _onnx(args: argparse.Namespace) -> int:
    from state_core.export import export_run

    result = export_run(
        args.run_dir, args.out, checkpoint=args.checkpoint, with_mask=not args.no_mask, tolerance=args.tolerance
    )
    print(result.onnx.parity.summary())
    print(f"exported {result.onnx_path} and {result.metadata_path}")
    return 0


def check_exported(exported: str | Path) -> None:
    """Load `model.onnx` of an export folder and check it against its `metadata.json` before publishing."""
    import onnx

    from state_core.errors import ArtifactError
    from state_core.export.metadata import METADATA_FILE, ModelMetadata
    from state_core.export.run_export import ONNX_FILE
    from state_core.export.spec import signature_of_onnx

    folder = Path(exported)
    if not folder.is_dir():
        raise ArtifactError(f"--exported {folder}: not a folder; pass the --out folder of `state export onnx`")
    try:
        metadata = ModelMetadata.load(folder / METADATA_FILE)
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ArtifactError(
            f"{folder / METADATA_FILE}: not a metadata file of `state export onnx` ({err!r}); re-export the run"
        ) from None
    path = folder / ONNX_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist; re-export the run with `state export onnx`")
    signature = signature_of_onnx(path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as err:  # noqa: BLE001 - the checker raises ValidationError and protobuf errors
        raise ArtifactError(
            f"{path}: not a valid ONNX model ({str(err).splitlines()[0][:200]}); re-export the run"
        ) from None
    expected = metadata.signature

    def names(specs) -> list[tuple[str, str]]:  # noqa: ANN001
        return [(t.name, t.dtype) for t in specs]

    if names(signature.inputs) != names(expected.inputs) or names(signature.outputs) != names(expected.outputs):
        raise ArtifactError(
            f"{path} does not match {folder / METADATA_FILE}: the graph has inputs "
            f"{names(signature.inputs)} and outputs {names(signature.outputs)}, the metadata expects "
            f"{names(expected.inputs)} and {names(expected.outputs)}; re-export the run"
        )


def _triton(args: argparse.Namespace) -> int:
    from state_core.serve.repository import publish_model

    check_exported(args.exported)  # a broken or foreign model.onnx must never become a served version
    published = publish_model(
        args.repository,
        args.model_name,
        args.exported,
        backend=args.backend,
        keep_last=args.keep_last,
        max_batch_size=args.max_batch_size,
    )
    print(
        f"published {published.model_name} version {published.version} to {published.repository} "
        f"(kept {list(published.kept_versions)}, removed {list(published.removed_versions)})"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from state_core.serve.repository import rollback_to

    rollback_to(args.repository, args.model_name, args.version, backend=args.backend)
    print(f"{args.repository}/{args.model_name} now serves version {args.version}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="export_command", metavar="{onnx,triton,rollback}")
    parser.set_defaults(func=lambda args: parser.print_help())

    onnx = sub.add_parser("onnx", help="export a trained ST run to ONNX (fails unless ONNX Runtime matches PyTorch)")
    onnx.add_argument("--run-dir", required=True, help="training run folder (<output_dir>/<name>)")
    onnx.add_argument("--out", required=True, help="output folder for model.onnx and metadata.json")
    onnx.add_argument("--checkpoint", default="final", help="final (default), last, best, or a .ckpt name")
    onnx.add_argument("--no-mask", action="store_true", help="leave out the set_mask (key-padding) input")
    onnx.add_argument("--tolerance", type=float, default=1e-5, help="parity gate: max |ORT - torch| (default 1e-5)")
    onnx.set_defaults(func=_onnx)

    def repository_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--repository", required=True, help="model repository: a folder or gs://bucket/prefix")
        p.add_argument("--model-name", default="state_st", help="model name in the repository (default state_st)")
        p.add_argument(
            "--backend",
            choices=("onnxruntime", "python"),
            default="onnxruntime",
            help="onnxruntime: production config (GPU); python: ONNX Runtime inside the python backend "
            "(what the local tritonserver runs)",
        )

    triton = sub.add_parser("triton", help="publish an exported model as the next version in a Triton repository")
    triton.add_argument("--exported", required=True, help="folder written by `state export onnx`")
    repository_args(triton)
    triton.add_argument("--keep-last", type=int, default=3, help="versions kept on storage (default 3)")
    triton.add_argument("--max-batch-size", type=int, default=64, help="sets per request batch (default 64)")
    triton.set_defaults(func=_triton)

    rollback = sub.add_parser("rollback", help="serve an older version that is still in the repository")
    repository_args(rollback)
    rollback.add_argument("--version", type=int, required=True)
    rollback.set_defaults(func=_rollback)

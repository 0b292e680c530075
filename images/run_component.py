"""Run one executor of a compiled pipeline YAML inside a container image, the way KFP's launcher does.

The launcher takes the executor's `command` and `args` from the YAML, replaces `{{$}}` with the executor
input (parameter values, output artifact URIs, where to write the executor output) and runs it in the
task's image. This does the same with a local container engine and a host folder mounted at the same path,
so what runs is the code inlined in the YAML against the `state_core` installed in the image:

    python images/run_component.py --yaml train.yaml --executor exec-split-cells --image TAG \
        --work /tmp/w --param experiment_toml=/tmp/w/data/fewshot.toml --param seed=0 ...

Prints the executor output JSON (returned parameters, artifact metadata). Used by images/build_check.sh.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml


def executor_input(spec: dict, executor: str, params: dict[str, object], work: Path) -> dict:
    """The executor input of `executor`: given parameters, and every output artifact under `work/outputs`."""
    component = next(c for c in spec["components"].values() if c.get("executorLabel") == executor)
    outputs = component.get("outputDefinitions", {})
    artifacts = {
        name: {
            "artifacts": [
                {
                    "name": name,
                    "type": {"schemaTitle": body["artifactType"]["schemaTitle"]},
                    "uri": str(work / "outputs" / name),
                    "metadata": {},
                }
            ]
        }
        for name, body in outputs.get("artifacts", {}).items()
    }
    return {
        "inputs": {"parameterValues": params},
        "outputs": {
            "artifacts": artifacts,
            "parameters": {
                name: {"outputFile": str(work / "outputs" / f"{name}.txt")} for name in outputs.get("parameters", {})
            },
            "outputFile": str(work / "executor_output.json"),
        },
    }


def command_line(spec: dict, executor: str, payload: dict) -> list[str]:
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    text = json.dumps(payload)
    return [*container["command"], *(text if arg == "{{$}}" else arg for arg in container["args"])]


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", required=True, type=Path, help="compiled pipeline YAML")
    parser.add_argument("--executor", required=True, help="e.g. exec-split-cells")
    parser.add_argument("--image", required=True, help="image to run it in (local tag)")
    parser.add_argument("--work", required=True, type=Path, help="host folder, mounted at the same path")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--engine", default="podman --runtime runc", help="container engine command")
    parser.add_argument("--engine-args", default="", help="extra `run` options (ulimits, user)")
    args = parser.parse_args(argv)

    spec = yaml.safe_load_all(args.yaml.read_text()).__next__()
    params = dict(item.split("=", 1) for item in args.param)
    work = args.work.resolve()
    (work / "outputs").mkdir(parents=True, exist_ok=True)
    for folder in (work, work / "outputs"):
        folder.chmod(0o777)  # the image runs as its own non-root user (uid 10001), who writes the outputs here
    payload = executor_input(spec, args.executor, {k: _value(v) for k, v in params.items()}, work)
    argv_in_image = command_line(spec, args.executor, payload)
    engine = [
        *shlex.split(args.engine),
        "run",
        "--rm",
        *shlex.split(args.engine_args),
        "--volume",
        f"{work}:{work}",
        "--entrypoint",
        argv_in_image[0],
        args.image,
        *argv_in_image[1:],
    ]
    done = subprocess.run(engine, check=False)
    if done.returncode != 0:
        print(f"{args.executor} exited {done.returncode} in {args.image}", file=sys.stderr)
        return done.returncode
    print((work / "executor_output.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

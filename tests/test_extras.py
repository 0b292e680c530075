"""Without the optional extras the library still imports and runs; each part that needs one names it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter where kfp, tritonclient and google-cloud-storage cannot be imported, as on a
# machine that installed `state-core` without extras.
SCRIPT = textwrap.dedent("""
    import importlib.abc, io, json, sys, tempfile
    from contextlib import redirect_stderr
    from pathlib import Path

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            gcs = name.startswith(("google.cloud.storage", "google.api_core"))
            if name.split(".")[0] in ("kfp", "tritonclient") or gcs:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, Missing())
    out = {}
    import state_core.train.fit, state_core.export.run_export, state_core.runs.load, state_core.eval  # noqa
    from state_core.cli.main import build_parser, main
    from state_core.errors import MissingExtraError
    build_parser([])  # every command group registers
    tmp = Path(tempfile.mkdtemp())
    err = io.StringIO()
    with redirect_stderr(err):
        out["pipeline_code"] = main(["pipeline", "compile", "--out", str(tmp / "train.yaml")])
    out["pipeline_err"] = err.getvalue()
    (tmp / "a.h5ad").write_bytes(b"")
    from state_core.storage import gcs_client, list_files
    out["local_files"] = list_files(str(tmp))
    for name, call in (("gcs", gcs_client), ("serve", lambda: __import__("state_core.serve.client"))):
        try:
            call()
            out[name] = "no error"
        except MissingExtraError as e:
            out[name] = str(e)
    out["kfp_loaded"] = any(m.split(".")[0] == "kfp" for m in sys.modules)
    out["pipeline_modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("pipelines", "components"))
    print(json.dumps(out))
""")


def _run_without_extras() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_core_library_and_cli_work_without_extras_and_each_extra_is_named():
    out = _run_without_extras()
    assert out["pipeline_code"] == 2 and "pip install 'state-core[pipelines]'" in out["pipeline_err"]
    assert "Traceback" not in out["pipeline_err"]
    assert out["local_files"] and out["local_files"][0].endswith("a.h5ad")
    assert "pip install 'state-core[gcs]'" in out["gcs"]
    assert "pip install 'state-core[serve]'" in out["serve"]
    assert not out["kfp_loaded"]
    # `state pipeline` is the pipelines layer's own thin command module (an entry point); nothing more of
    # that layer is imported before the missing extra is named
    assert out["pipeline_modules"] == ["pipelines", "pipelines.cli"], out["pipeline_modules"]

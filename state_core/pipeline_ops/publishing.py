"""The publish stage: an exported model becomes the served version, with a record of why it was promoted."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from state_core.errors import ServingError
from state_core.pipeline_ops.publish_record import PublishRecord, write_record


def wait_until_ready(
    triton_url: str, model_name: str, version: int, timeout_s: float = 900.0, poll_s: float = 5.0
) -> float:
    """Poll Triton's `GET /v2/models/<name>/versions/<v>/ready` until it answers 200; returns the seconds waited.

    Triton polls the repository on its own schedule (`--repository-poll-secs`) and may need minutes to
    load a large model, so "published" and "serving" are different moments.
    """
    url = f"{triton_url.rstrip('/')}/v2/models/{model_name}/versions/{version}/ready"
    start = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=min(poll_s, 10.0)) as reply:
                if reply.status == 200:
                    return time.monotonic() - start
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            last = str(getattr(err, "reason", err))
        if time.monotonic() - start > timeout_s:
            raise ServingError(
                f"{url}: version {version} of {model_name} was not ready after {timeout_s:.0f} s ({last}); check "
                "the Triton pod's log for the load error, then roll back with `state serve rollback` or republish"
            )
        time.sleep(poll_s)


def publish_version(
    exported_dir: str,
    repository: str,
    model_name: str,
    metrics: Mapping[str, float],
    *,
    run_dir: str | Path | None = None,
    run_uri: str = "",
    data_fingerprint: str = "",
    backend: str = "onnxruntime",
    triton_ready_url: str = "",
    ready_timeout_s: float = 900.0,
) -> PublishRecord:
    """Publish `exported_dir` (model.onnx + metadata.json) as the next version and record it.

    In order: the version goes live; the training run it came from is stored with it (`run_dir`, so the
    next gate can re-evaluate it on new data); Triton is asked until it serves it (`triton_ready_url`); then
    the record is written. A gate that runs before the record exists finds none and holds its candidate,
    which is the safe side. `data_fingerprint` is the one the model was trained on (from the training task),
    never one computed now: the data may have changed since.
    """
    from state_core.pipeline_ops.same_cells import store_evaluation_run
    from state_core.serve.repository import publish_model

    published = publish_model(repository, model_name, exported_dir, backend=backend)
    if run_dir is not None:
        store_evaluation_run(repository, model_name, published.version, run_dir)
    if triton_ready_url:
        wait_until_ready(triton_ready_url, model_name, published.version, timeout_s=ready_timeout_s)
    record = PublishRecord(
        model_name=model_name,
        version=published.version,
        metrics={str(k): float(v) for k, v in metrics.items()},
        run_uri=run_uri,
        data_fingerprint=data_fingerprint,
    )
    write_record(repository, record)
    return record

"""gRPC client for an ST model served by Triton: readiness, batching, concurrency, timeouts, retries.

Requests follow the served config: the leading batch dim is Triton's, `pert_idx` is sent as [B, 1]
(the config reshapes it to the graph's [B]), and only the optional inputs the model declares are sent.
Perturbations go as indices (`predict_named` maps names through metadata.json): no string tensors to
build and check per request; the served ensemble also takes names (`pert_name`, BYTES) for other clients.
Sets are cut into chunks of at most the model's `max_batch_size` and sent from a small thread pool,
one gRPC client per thread. Transient failures (server unavailable, deadline, queue full) are retried
with backoff; a rejected request (bad dtype, shape, index) is not, and raises `ServingError` with the
server's message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from state_core.errors import ServingError
from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.extras import require
from state_core.serve.repo_store import RepositoryStore

grpcclient = require("tritonclient.grpc", "serve", "the Triton client")
InferenceServerException = require("tritonclient.utils", "serve", "the Triton client").InferenceServerException

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "state_st"
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


@dataclass(frozen=True)
class ClientSettings:
    timeout_s: float = 30.0  # per request
    retries: int = 3  # extra attempts for transient failures
    backoff_s: float = 0.2  # doubled after each failed attempt
    concurrency: int = 4  # requests in flight
    max_batch_size: int | None = None  # None: the model's max_batch_size


@dataclass(frozen=True)
class ServedInput:
    name: str
    dtype: str  # Triton dtype, e.g. FP32
    rank: int  # dims without the batch dim
    optional: bool = False  # e.g. pert_name: the client sends pert_idx instead


def _is_transient(err: InferenceServerException) -> bool:
    status = str(err.status() or "")
    return any(code in status for code in _TRANSIENT)


class TritonSTClient:
    """Predictions from a Triton-served ST graph (`ctrl_cell_emb`, `pert_idx`, [`batch_idx`], [`set_mask`])."""

    def __init__(
        self,
        url: str,
        model_name: str = DEFAULT_MODEL_NAME,
        settings: ClientSettings = ClientSettings(),
        version: str = "",
    ):
        self.url, self.model_name, self.settings, self.version = url, model_name, settings, version
        self._local = threading.local()
        self._inputs: list[ServedInput] | None = None
        self._outputs: list[str] = []
        self._max_batch = 0

    def _client(self) -> grpcclient.InferenceServerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = grpcclient.InferenceServerClient(self.url)
            self._local.client = client
        return client

    def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the server and the model are ready; `ServingError` naming the URL otherwise."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if self._client().is_server_ready() and self._client().is_model_ready(self.model_name, self.version):
                    self._describe()
                    return
                last = f"model {self.model_name!r} not ready"
            except InferenceServerException as err:
                last = err.message() or str(err)
            time.sleep(0.2)
        raise ServingError(
            f"Triton at {self.url} is not ready for model {self.model_name!r} after {timeout_s:.0f} s "
            f"({last}); fix: start the server (`state serve start`) or check the address and model name"
        )

    def _describe(self) -> None:
        if self._inputs is not None:
            return
        try:
            config = self._client().get_model_config(self.model_name, self.version, as_json=True)["config"]
        except InferenceServerException as err:
            raise ServingError(
                f"Triton at {self.url}: cannot read the config of {self.model_name!r}: {err.message()}"
            ) from None
        self._inputs = [
            ServedInput(i["name"], i["data_type"].removeprefix("TYPE_"), len(i["dims"]), bool(i.get("optional")))
            for i in config["input"]
        ]
        self._outputs = [o["name"] for o in config["output"]]
        self._max_batch = int(config.get("max_batch_size", 0))

    @property
    def input_names(self) -> list[str]:
        self._describe()
        return [i.name for i in self._inputs or []]

    @property
    def max_batch_size(self) -> int:
        self._describe()
        return min(self.settings.max_batch_size or self._max_batch, self._max_batch)

    def served_version(self) -> str:
        """The version the server answers with by default (the highest ready one)."""
        meta = self._client().get_model_metadata(self.model_name, self.version, as_json=True)
        return max(meta["versions"], key=int)

    def predict(
        self,
        ctrl: np.ndarray,
        pert_idx: np.ndarray,
        batch_idx: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """ctrl [B,S,D] float32, pert_idx [B] int64, batch_idx [B,S], mask [B,S] bool -> {output name: [B,S,...]}."""
        self._describe()
        if ctrl.ndim != 3 or ctrl.shape[0] == 0:
            raise ServingError(f"ctrl must be [B, S, D] with B >= 1 sets, got shape {tuple(ctrl.shape)}")
        n = ctrl.shape[0]
        arrays = {
            "ctrl_cell_emb": np.ascontiguousarray(ctrl, dtype=np.float32),
            "pert_idx": np.asarray(pert_idx, dtype=np.int64).reshape(n, 1),
        }  # [B, 1]: Triton's batch + dims [1]
        if "batch_idx" in self.input_names:
            arrays["batch_idx"] = (
                np.zeros(ctrl.shape[:2], np.int64) if batch_idx is None else np.asarray(batch_idx, dtype=np.int64)
            )
        if "set_mask" in self.input_names:
            arrays["set_mask"] = np.ones(ctrl.shape[:2], bool) if mask is None else np.asarray(mask, dtype=bool)
        step = self.max_batch_size
        chunks = [{k: v[i : i + step] for k, v in arrays.items()} for i in range(0, n, step)]
        if len(chunks) == 1:  # the common small call: no thread pool
            parts = [self._infer_with_retries(chunks[0])]
        else:
            with ThreadPoolExecutor(max_workers=max(1, min(self.settings.concurrency, len(chunks)))) as pool:
                parts = list(pool.map(self._infer_with_retries, chunks))
        return {name: np.concatenate([p[name] for p in parts]) for name in self._outputs}

    def predict_named(
        self,
        ctrl: np.ndarray,
        perturbations: list[str],
        metadata: ModelMetadata,
        batch_idx: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Like `predict`, with perturbations by name (unknown names raise `UnknownLabelError`)."""
        pert_idx = np.asarray(metadata.pert_indices(list(perturbations)), dtype=np.int64)  # [B]
        return self.predict(ctrl, pert_idx, batch_idx, mask)

    def _infer_with_retries(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = []
        for spec in self._inputs or []:
            if spec.optional and spec.name not in arrays:
                continue
            array = arrays[spec.name]
            tensor = grpcclient.InferInput(spec.name, list(array.shape), spec.dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        delay = self.settings.backoff_s
        for attempt in range(self.settings.retries + 1):
            try:
                result = self._client().infer(
                    self.model_name, inputs, model_version=self.version, client_timeout=self.settings.timeout_s
                )
                return {name: result.as_numpy(name) for name in self._outputs}
            except InferenceServerException as err:
                if not _is_transient(err) or attempt == self.settings.retries:
                    raise ServingError(
                        f"Triton at {self.url} rejected a request to {self.model_name!r} "
                        f"({err.status()}): {err.message()}"
                    ) from None
                log.warning(
                    "transient error from %s (%s); retry %d in %.1f s", self.url, err.status(), attempt + 1, delay
                )
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def served_metadata(client: TritonSTClient, repository: str) -> ModelMetadata:
    """The metadata.json of the version the server is serving, read from the model repository."""
    store = RepositoryStore(repository)
    version = client.served_version()
    text = store.read_text(client.model_name, version, METADATA_FILE)
    if text is None:
        raise ServingError(
            f"{store.uri(client.model_name, version, METADATA_FILE)} is missing; "
            "is --repository the one the server serves?"
        )
    return ModelMetadata.from_json(json.loads(text), source=store.uri(client.model_name, version, METADATA_FILE))


def triton_predictor(url: str, model_name: str = DEFAULT_MODEL_NAME, settings: ClientSettings = ClientSettings()):
    """A `state_core.train.infer.Predictor` that runs on Triton instead of in process."""
    client = TritonSTClient(url, model_name, settings)
    client.wait_until_ready(settings.timeout_s)

    def predict(ctrl, pert_idx, batch_idx, mask, cell_type_idx):
        out = client.predict(ctrl, pert_idx, batch_idx, mask)
        return out["pred_latent"], out.get("pred_genes")

    return predict

"""Score the serving model on the candidate's test cells, so the promotion gate compares like with like.

A metric of the serving model taken from its own publish record was measured on the test split of the data
it was trained on; the candidate's was measured on today's. Those numbers differ even for one and the same
model, so the gate re-evaluates the serving version here:

    serving version's training run (stored in the repository at publish time)
      + the candidate's split manifest, restricted to labels the serving model knows
      -> predictions and cell-eval metrics on exactly the candidate's test cells

When the new data holds perturbations, cell types or batches the serving model has never seen, those
cells are left out of the comparison (and named in the note), and the candidate is scored again on the
same reduced set. When no comparison is possible (no stored run, other features), the result says why and
the gate holds the candidate.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from state_core.data.splits import SPLITS, ManifestFile, SplitManifest
from state_core.data.vocab import Vocab
from state_core.pipeline_ops.comparison import COMPARED, COMPARISON_FILE, IMPOSSIBLE, NONE_SERVING, SameCellsComparison
from state_core.runs.layout import CONFIG_FILE, MODEL_FILE, SPLIT_DIR, VOCAB_FILE, WEIGHTS_FILE

EVALUATION_RUN = "evaluation_run"  # <repository>/<model>/<version>/evaluation_run/: what re-evaluation needs
RUN_FILES = (CONFIG_FILE, VOCAB_FILE, MODEL_FILE, WEIGHTS_FILE)
SERVING_EVAL = "serving_eval"  # the serving model's predictions and metrics on the compared cells
CANDIDATE_EVAL = "candidate_eval"  # the candidate's on the same cells, when labels were left out


def store_evaluation_run(repository: str, model_name: str, version: int, run_dir: str | Path) -> str:
    """Copy what re-evaluating a run needs (config, vocabulary, model description, final weights) into the
    published version folder; returns its URI. Triton loads only the model file of a version folder."""
    from state_core.serve.repo_store import RepositoryStore
    from state_core.storage import upload

    store = RepositoryStore(repository)
    for name in RUN_FILES:
        upload(Path(run_dir) / name, store.uri(model_name, version, EVALUATION_RUN, name))
    return store.uri(model_name, version, EVALUATION_RUN)


def _fetch_serving_run(repository: str, model_name: str, version: int, target: Path) -> Path | None:
    from state_core.serve.repo_store import RepositoryStore
    from state_core.storage import download, exists

    store = RepositoryStore(repository)
    if not all(exists(store.uri(model_name, version, EVALUATION_RUN, n)) for n in RUN_FILES):
        return None
    for name in RUN_FILES:
        download(store.uri(model_name, version, EVALUATION_RUN, name), target / name)
    return target


def _incompatibility(serving: Vocab, candidate: Vocab) -> str:
    """Why the serving model cannot predict the candidate's inputs; empty when it can."""
    checks = [
        ("input features", serving.feature_names, candidate.feature_names),
        ("embed_key", serving.embed_key, candidate.embed_key),
        ("output_space", serving.output_space, candidate.output_space),
        ("gene names", serving.gene_names, candidate.gene_names),
        ("control label", serving.control_pert, candidate.control_pert),
    ]
    for what, old, new in checks:
        if old != new:
            return f"the serving model was trained on other {what} than the candidate's data"
    return ""


def _known_rows(entry: ManifestFile, serving: Vocab, candidate: Vocab, skipped: dict[str, set[str]]) -> ManifestFile:
    """`entry` without rows whose labels the serving vocabulary lacks (unknown labels noted in `skipped`)."""
    from state_core.data.h5ad import read_obs_labels

    keep_by_split = {}
    columns = [
        ("perturbation", candidate.pert_col, serving.perturbations),
        ("cell type", candidate.cell_type_key, serving.cell_types),
    ]
    if candidate.batch_col and serving.batch_col:
        columns.append(("batch", candidate.batch_col, serving.batches))
    labels = {kind: read_obs_labels(entry.path, column).values() for kind, column, _ in columns}
    for split in SPLITS:
        rows = entry.rows(split)
        keep = np.ones(rows.size, dtype=bool)
        for kind, _, known in columns:
            values = labels[kind][rows]
            unknown = ~np.isin(values, np.asarray(known, dtype=object))
            if split == "test":
                skipped.setdefault(kind, set()).update(values[unknown].tolist())
            keep &= ~unknown
        keep_by_split[split] = rows[keep]
    return dataclasses.replace(entry, **keep_by_split)


def _view(run_files: Path, manifest: SplitManifest, vocab: Vocab, target: Path) -> Path:
    """A run folder made of another run's model files and `manifest`, for `predict_test_split`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if name != VOCAB_FILE:
            shutil.copyfile(run_files / name, target / name)
    vocab.save(target / VOCAB_FILE)
    manifest.save(target / SPLIT_DIR)
    return target


def compare_on_candidate_cells(
    candidate_run: str | Path,
    candidate_metrics: Mapping[str, float],
    repository: str,
    model_name: str,
    work_dir: str | Path,
) -> SameCellsComparison:
    """Candidate vs serving metrics on the candidate's test cells (see the module docstring).

    Writes `<work_dir>/comparison.json` and the evaluations (`serving_eval/`, `candidate_eval/`) there."""
    result = _compare(candidate_run, candidate_metrics, repository, model_name, Path(work_dir))
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    (Path(work_dir) / COMPARISON_FILE).write_text(result.to_json())
    return result


def _compare(
    candidate_run: str | Path, candidate_metrics: Mapping[str, float], repository: str, model_name: str, work: Path
) -> SameCellsComparison:
    from state_core.pipeline_ops.evaluation import evaluate_run
    from state_core.pipeline_ops.publish_record import serving_version

    version = serving_version(repository, model_name)
    if version == 0:
        return SameCellsComparison(NONE_SERVING, "No model is serving yet.")
    serving_files = _fetch_serving_run(repository, model_name, version, work / "serving_run")
    if serving_files is None:
        return SameCellsComparison(
            IMPOSSIBLE,
            f"Serving version {version} has no stored {EVALUATION_RUN}/ (published by hand or by an "
            "older pipeline), so it cannot be scored on the new test cells; republish it through the pipeline "
            "or remove it.",
            serving_version=version,
        )
    candidate_run = Path(candidate_run)
    serving_vocab, candidate_vocab = Vocab.load(serving_files / VOCAB_FILE), Vocab.load(candidate_run / VOCAB_FILE)
    why = _incompatibility(serving_vocab, candidate_vocab)
    if why:
        return SameCellsComparison(
            IMPOSSIBLE,
            f"Serving version {version} cannot be scored on the new test cells: {why}.",
            serving_version=version,
        )

    manifest = SplitManifest.load(candidate_run / SPLIT_DIR)
    skipped: dict[str, set[str]] = {}
    reduced = dataclasses.replace(
        manifest, files=tuple(_known_rows(f, serving_vocab, candidate_vocab, skipped) for f in manifest.files)
    )
    skipped_lists = {kind: sorted(labels) for kind, labels in skipped.items() if labels}
    n_test = reduced.n_cells("test")
    if n_test == 0:
        return SameCellsComparison(
            IMPOSSIBLE,
            f"None of the test cells has labels serving version {version} knows.",
            serving_version=version,
            skipped_labels=skipped_lists,
        )
    # The data's column names may differ from the serving run's; its labels and their order may not.
    as_candidate = dataclasses.replace(
        serving_vocab,
        pert_col=candidate_vocab.pert_col,
        cell_type_key=candidate_vocab.cell_type_key,
        batch_col=candidate_vocab.batch_col if serving_vocab.batch_col else None,
    )
    serving_view = _view(serving_files, reduced, as_candidate, work / "serving_view")
    serving_metrics = evaluate_run(serving_view, work / SERVING_EVAL).metrics
    if skipped_lists:
        candidate_view = _view(candidate_run, reduced, candidate_vocab, work / "candidate_view")
        candidate_same = evaluate_run(candidate_view, work / CANDIDATE_EVAL).metrics
        left_out = "; ".join(f"{kind}: {', '.join(labels)}" for kind, labels in skipped_lists.items())
        note = (
            f"Compared with serving version {version} on {n_test} test cells. Left out of this comparison "
            f"(labels the serving model cannot predict; the candidate was trained with them): {left_out}."
        )
    else:
        candidate_same = dict(candidate_metrics)
        note = f"Compared with serving version {version} on the candidate's {n_test} test cells."
    for scratch in ("serving_run", "serving_view", "candidate_view"):  # model copies; the evaluations stay
        shutil.rmtree(work / scratch, ignore_errors=True)
    return SameCellsComparison(
        COMPARED,
        note,
        serving_version=version,
        candidate=candidate_same,
        serving=serving_metrics,
        skipped_labels=skipped_lists,
        n_test_cells=n_test,
    )

"""The split stage: which rows of which file go to train, val and test.

Semantics, per file and cell type (roles from `state_core.data.catalog.role_of`):
  * cell type of a `[training]` dataset, not held out: every cell -> train;
  * zeroshot cell type: every cell, perturbed AND control, -> its split (val or test). Its controls
    never reach train, so a held-out cell type is truly unseen (fixes cell-load#67);
  * fewshot cell type: cells of the listed val / test perturbations -> val / test (a perturbation
    listed in both goes to both, as the State README promises), other perturbed cells -> train.
    Its controls are DIVIDED, not copied: shuffled with the seed and cut in proportion to the
    perturbed cells of each split, each split with perturbed cells getting at least one control;
  * a non-training dataset contributes only its zeroshot / fewshot cell types (its fewshot
    "other" perturbations do train); its other cell types are not used;
  * rows whose perturbation or cell type is missing (NaN) are not used.
Control pools are per file and cell type, as in cell-load: cells of different files never mix.
The division uses a generator seeded from (seed, dataset, file name, cell type) through hashlib,
so the manifest is identical for a seed on any machine and independent of PYTHONHASHSEED.

Artifacts (`SplitManifest.save(dir)`): `split_manifest.npz` (sorted int64 row indices per file and
split; metadata as a JSON string; load with allow_pickle=False), `split_summary.json` (cell counts
per dataset / cell type / perturbation / split) and `split_summary.md` (a table for people).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from state_core.atomic import atomic_path
from state_core.config.experiment import SPLITS, ExperimentConfig, ObsColumns, read_experiment
from state_core.data.catalog import FileLabels, perturbed_split_masks, role_of, scan_experiment
from state_core.errors import ArtifactError, ConfigError

MANIFEST_FILE = "split_manifest.npz"
SUMMARY_JSON = "split_summary.json"
SUMMARY_MD = "split_summary.md"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class ManifestFile:
    """Row indices (sorted int64) of one data file for each split. `path` is the file's path or URI."""

    dataset: str
    path: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[split]


@dataclass(frozen=True, eq=False)
class SplitManifest:
    """Where every used cell goes, plus the per-label cell counts (`summary`)."""

    files: tuple[ManifestFile, ...]
    columns: ObsColumns
    seed: int
    source: str
    summary: dict[str, Any] = field(default_factory=dict)

    def n_cells(self, split: str) -> int:
        return int(sum(f.rows(split).size for f in self.files))

    def save(self, out_dir: str | Path) -> Path:
        """Write the three split artifacts into `out_dir` (each via a temp file and a rename)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "seed": self.seed,
            "source": self.source,
            "columns": self.columns.to_dict(),
            "files": [{"dataset": f.dataset, "path": f.path} for f in self.files],
        }
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for i, f in enumerate(self.files):
            for split in SPLITS:
                arrays[f"file{i}/{split}"] = np.asarray(f.rows(split), dtype=np.int64)
        _write_atomic(out_dir / MANIFEST_FILE, lambda handle: np.savez(handle, **arrays))
        summary_text = json.dumps(self.summary, indent=2, sort_keys=True) + "\n"
        _write_atomic(out_dir / SUMMARY_JSON, lambda handle: handle.write(summary_text.encode()))
        table = render_summary_markdown(self.summary)
        _write_atomic(out_dir / SUMMARY_MD, lambda handle: handle.write(table.encode()))
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path) -> SplitManifest:
        out_dir = Path(out_dir)
        path = out_dir / MANIFEST_FILE
        if not path.is_file():
            raise ArtifactError(f"{path}: no split manifest here; run `state data split` first")
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                files = tuple(
                    ManifestFile(entry["dataset"], entry["path"], *(npz[f"file{i}/{s}"] for s in SPLITS))
                    for i, entry in enumerate(meta["files"])
                )
        except (KeyError, ValueError, OSError) as err:
            raise ArtifactError(f"{path}: unreadable or incomplete split manifest ({err}); re-run the split") from err
        summary_path = out_dir / SUMMARY_JSON
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        return cls(
            files=files,
            columns=ObsColumns.from_dict(meta["columns"]),
            seed=int(meta["seed"]),
            source=meta["source"],
            summary=summary,
        )


def _write_atomic(path: Path, write: Callable[[Any], Any]) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        write(handle)


def _generator(seed: int, *names: str) -> np.random.Generator:
    """A generator keyed by the seed and names via a stable hash (Python's hash() is salted)."""
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def divide_controls(controls: np.ndarray, weights: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Cut `controls` into disjoint parts proportional to `weights` (largest remainder method);
    every split with a positive weight gets at least one control. Needs len(controls) >= that count."""
    active = [s for s in SPLITS if weights.get(s, 0) > 0]
    counts = dict.fromkeys(SPLITS, 0)
    if active:
        for s in active:
            counts[s] = 1
        spare = controls.size - len(active)
        total = sum(weights[s] for s in active)
        exact = {s: spare * weights[s] / total for s in active}
        for s in active:
            counts[s] += int(exact[s])
        leftover = controls.size - sum(counts.values())
        # ties broken by the fixed split order, so the division is fully determined by the seed
        for s in sorted(active, key=lambda s: (-(exact[s] - int(exact[s])), SPLITS.index(s)))[:leftover]:
            counts[s] += 1
    else:
        counts["train"] = controls.size
    shuffled = rng.permutation(controls)
    parts, start = {}, 0
    for s in SPLITS:
        parts[s] = np.sort(shuffled[start : start + counts[s]])
        start += counts[s]
    return parts


def assign_file(cfg: ExperimentConfig, columns: ObsColumns, labels: FileLabels, seed: int) -> ManifestFile:
    """Split the rows of one file (see the module docstring)."""
    control_code = labels.pert.code_of(columns.control_pert)
    picked: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for ct_code, cell_type in enumerate(labels.cell_type.categories.tolist()):
        role = role_of(cfg, labels.dataset, cell_type)
        rows = np.flatnonzero(labels.cell_type.codes == ct_code)
        if role is None or rows.size == 0:
            continue
        masks = perturbed_split_masks(labels, rows, role, control_code)
        for split, mask in masks.items():
            picked[split].append(rows[mask])
        controls = rows[labels.pert.codes[rows] == control_code]
        if role.kind == "train":
            picked["train"].append(controls)
        elif role.kind == "zeroshot":
            picked[str(role.split)].append(controls)
        else:
            weights = {s: int(m.sum()) for s, m in masks.items()}
            rng = _generator(seed, labels.dataset, labels.path.name, cell_type)
            for split, part in divide_controls(controls, weights, rng).items():
                picked[split].append(part)
    merged = {
        s: np.sort(np.concatenate(picked[s])).astype(np.int64) if picked[s] else np.zeros(0, np.int64) for s in SPLITS
    }
    return ManifestFile(labels.dataset, labels.uri or str(labels.path), merged["train"], merged["val"], merged["test"])


def summarize(
    cfg: ExperimentConfig, columns: ObsColumns, scanned: list[FileLabels], files: list[ManifestFile], seed: int
) -> dict[str, Any]:
    """Cell counts per dataset / cell type / perturbation / split, plus roles and totals."""
    counts: dict[str, dict[str, dict[str, dict[str, int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: dict.fromkeys(SPLITS, 0)))
    )
    roles: dict[str, dict[str, str]] = defaultdict(dict)
    for labels, manifest_file in zip(scanned, files, strict=True):
        for split in SPLITS:
            rows = manifest_file.rows(split)
            if rows.size == 0:
                continue
            pairs = np.stack([labels.cell_type.codes[rows], labels.pert.codes[rows]], axis=1)  # [n, 2]
            uniques, n = np.unique(pairs, axis=0, return_counts=True)
            for (ct_code, pert_code), count in zip(uniques.tolist(), n.tolist(), strict=True):
                cell_type = str(labels.cell_type.categories[ct_code])
                counts[labels.dataset][cell_type][str(labels.pert.categories[pert_code])][split] += int(count)
        for cell_type in labels.cell_type.categories.tolist():
            role = role_of(cfg, labels.dataset, cell_type)
            if role is not None:
                roles[labels.dataset][cell_type] = role.kind if role.kind != "zeroshot" else f"zeroshot:{role.split}"
    totals = {s: int(sum(f.rows(s).size for f in files)) for s in SPLITS}
    return {
        "source": cfg.source,
        "seed": seed,
        "columns": columns.to_dict(),
        "totals": totals,
        "roles": {ds: dict(sorted(r.items())) for ds, r in sorted(roles.items())},
        "counts": {
            ds: {ct: dict(sorted(p.items())) for ct, p in sorted(c.items())} for ds, c in sorted(counts.items())
        },
    }


def render_summary_markdown(summary: dict[str, Any]) -> str:
    """One row per (dataset, cell type): role, then cells (perturbations, controls) per split."""
    control = (summary.get("columns") or {}).get("control_pert")
    lines = [
        f"# Split summary (seed {summary.get('seed')}, {summary.get('source')})",
        "",
        "Each split column: cells (perturbations / control cells).",
        "",
        "| dataset | cell type | role | " + " | ".join(SPLITS) + " |",
        "|---|---|---|" + "---:|" * len(SPLITS),
    ]
    for dataset, cell_types in summary.get("counts", {}).items():
        for cell_type, perts in cell_types.items():
            cells = []
            for split in SPLITS:
                n_cells = sum(c[split] for c in perts.values())
                n_perts = sum(1 for p, c in perts.items() if c[split] and p != control)
                n_ctrl = perts.get(control, {}).get(split, 0)
                cells.append(f"{n_cells} ({n_perts} / {n_ctrl})" if n_cells else "-")
            role = summary.get("roles", {}).get(dataset, {}).get(cell_type, "")
            lines.append(f"| {dataset} | {cell_type} | {role} | " + " | ".join(cells) + " |")
    totals = summary.get("totals", {})
    lines.append("| **total** | | | " + " | ".join(str(totals.get(s, 0)) for s in SPLITS) + " |")
    return "\n".join(lines) + "\n"


def build_split_manifest(
    cfg: ExperimentConfig, columns: ObsColumns, seed: int = 0, cache_dir: str | Path | None = None
) -> SplitManifest:
    """Scan and validate the experiment's data, then assign every used row to a split."""
    scanned = scan_experiment(cfg, columns, cache_dir=cache_dir)
    files = [assign_file(cfg, columns, labels, seed) for labels in scanned]
    summary = summarize(cfg, columns, scanned, files, seed)
    return SplitManifest(files=tuple(files), columns=columns, seed=seed, source=cfg.source, summary=summary)


def run_split(
    toml_path: str | Path, out_dir: str | Path, columns: ObsColumns, seed: int = 0, cache_dir: str | Path | None = None
) -> SplitManifest:
    """The split stage as the CLI and the pipeline component run it: TOML in, artifacts in `out_dir`.

    Structural problems of the TOML and problems found in the data are reported together, in one error.
    """
    cfg, problems = read_experiment(toml_path)
    try:
        manifest = build_split_manifest(cfg, columns, seed=seed, cache_dir=cache_dir)
    except ConfigError as err:
        raise ConfigError(cfg.source, problems + err.problems) from None
    if problems:
        raise ConfigError(cfg.source, problems)
    manifest.save(out_dir)
    return manifest

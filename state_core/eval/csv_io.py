"""Writing large tables (DE tables: one row per perturbation x gene) to CSV quickly and atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_table_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` via a temp file. pyarrow's C++ writer is ~10x faster than pandas'
    float formatting (1 s per 40k-row DE table); pandas is the fallback when pyarrow is absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        frame.to_csv(tmp, index=False)
    else:
        options = pa_csv.WriteOptions(quoting_style="needed")
        pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), tmp, write_options=options)
    tmp.replace(path)

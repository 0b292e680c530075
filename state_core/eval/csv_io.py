"""Writing large tables (DE tables: one row per perturbation x gene) to CSV quickly and atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from state_core.atomic import atomic_path

if TYPE_CHECKING:
    from state_core.eval.de import Labels


def write_table_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` via a temp file. pyarrow's C++ writer is ~10x faster than pandas'
    float formatting (1 s per 40k-row DE table); pandas is the fallback when pyarrow is absent."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        return
    with atomic_path(path) as tmp:
        pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), tmp, write_options=_options(pa_csv))


def write_columns_csv(columns: dict[str, np.ndarray | Labels], path: Path) -> None:
    """`write_table_csv` for numpy columns: string columns as dictionary arrays (codes + names), so no
    per-row Python strings or pandas frame are built; the same bytes as `write_table_csv`."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        write_table_csv(
            pd.DataFrame({k: v if isinstance(v, np.ndarray) else v.values() for k, v in columns.items()}), path
        )
        return
    arrays = {
        name: pa.array(col)
        if isinstance(col, np.ndarray)
        else pa.DictionaryArray.from_arrays(col.codes, pa.array(col.names))
        for name, col in columns.items()
    }
    with atomic_path(path) as tmp:
        pa_csv.write_csv(pa.table(arrays), str(tmp), write_options=_options(pa_csv))


def _options(pa_csv: Any) -> Any:  # the pyarrow.csv module, imported lazily
    # 64k-row batches: ~15 % faster than the default 1,024 on a DE table; the bytes are the same
    return pa_csv.WriteOptions(quoting_style="needed", batch_size=1 << 16)

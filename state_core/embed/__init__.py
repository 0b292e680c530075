"""The State Embedding (SE) model around `state_core.models.se`: everything that knows about files.

    config.py        `state emb fit` config (YAML/TOML, strict keys)
    genes.py         gene table (safetensors gene -> vector), vocabulary, mapping dataset genes
    sentences.py     cell sentences and task genes in numpy (seeded per cell; compat mode)
    rows.py          expression rows from h5ad with h5py (dense or CSR; streaming)
    training_data.py the training Dataset and collator
    fit.py           Lightning training (`fit_se`)
    artifact.py      the SE model folder (save/load)
    transform.py     `transform_h5ad`: streaming embedding into obsm["X_state"]
    export.py        ONNX export with parity gate, Triton config (`export_se`)
    se_import.py     import of original SE folders (`import_original_se`)

Heavy modules (torch, Lightning) are imported by the submodules, not here.
"""

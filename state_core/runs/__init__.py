"""The run folder: what `state tx train` and `state tx import_arc` write, and what predict, infer and export
read back. `layout` names the files, `model_files` writes and reads `model.json` + `model.safetensors`,
`checkpoints` resolves and loads checkpoints, `load` rebuilds a typed `LoadedRun`, `arc_import` turns an
arc-state run folder into one of ours (the weight mapping itself is `state_core.models.arc_import`)."""

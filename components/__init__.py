"""KFP v2 components: one per pipeline stage, each a thin typed wrapper around one `state_core` function.

Components are lightweight Python components with `install_kfp_package=False`: the project image already
holds kfp and state_core, and `kfp.local.SubprocessRunner(use_venv=False)` runs the very same functions on a
developer machine. Imports of `state_core` stay inside each function body because KFP ships only the
function's source into the container.
"""

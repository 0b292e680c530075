"""Kubeflow pipelines built from `components/`: training with a promotion gate, batch inference, retraining.

Each pipeline is made by a `build_*` function that takes the compile-time settings (`PipelineSettings`:
the container image), so `state pipeline compile --image` needs no code edit; everything a user picks per
run (data, GPU type and count, gate metric) is a pipeline parameter shown in the Kubeflow UI.
"""

"""Names of the files in a run folder.

    <output_dir>/<name>/
      config.yaml          resolved TrainConfig
      vocab.json           perturbations, cell types, batches, feature and gene names, columns
      model.json           model kind + its config (enough to rebuild the nn.Module); written at the start
      model.safetensors    final weights (buffers included: perturbation table, baseline statistics)
      split/               split manifest used for this run
      checkpoints/         last.ckpt (resumable), the last few step=N.ckpt, the best step=N-val_loss=X.ckpt,
                           final.ckpt (weights only); all real files, weights_only-safe
      version_0/metrics.csv

Nothing here is pickled: checkpoints hold only tensors, numbers and strings and load with
`torch.load(weights_only=True)`.
"""

MODEL_FORMAT = 1
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
SPLIT_DIR = "split"
CHECKPOINT_DIR = "checkpoints"

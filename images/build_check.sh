#!/usr/bin/env bash
# Prove images/train.Dockerfile builds and that compiled components run in it, with no container registry.
#
#   sudo PYTHON=.venv/bin/python images/build_check.sh    # minutes (debootstrap + pip), not run in CI
#
# Steps: (1) debootstrap a Debian bookworm root with python3 and import it as the base image,
# (2) podman build with that base, the CPU torch wheel from $WHEELS (the CUDA wheel is gigabytes and is
# what the real build pulls from PyPI) and the pinned constraints, (3) the entrypoint and a non-root check,
# (4) compile the training pipeline here, pinned to the built image's digest, and run two of its tasks in
# the image the way KFP's launcher does (images/run_component.py): the data fingerprint, then the split on
# a small synthetic experiment made by the image's own `state data synth`.
# Needs: podman, runc, debootstrap, network to a Debian mirror and to PyPI (or local wheel indexes).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/var/tmp/state-build-check}"
WHEELS="${WHEELS:-/opt/wheels}"                       # must hold torch-2.13.0+cpu for python 3.11
# Local PEP 503 indexes (file://) to take wheels from besides PyPI; mounted read-only into the build.
LOCAL_INDEXES="${LOCAL_INDEXES:-}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PYTHON="${PYTHON:-python3}"                           # host python with the project's requirements
# CA bundle pip trusts during the build (a TLS-intercepting proxy's CA lives only in the host's bundle).
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
BASE_TAG="localhost/bookworm-python:check"
IMAGE_TAG="localhost/state-train:check"
# This machine's kernel/seccomp setup needs runc and explicit ulimits for podman.
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

step() { printf '\n== %s\n' "$*"; }

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y podman debootstrap"; exit 1; }
done
mkdir -p "$WORK"

step "1/5 base image from debootstrap (bookworm + python3)"
if ! "${PODMAN[@]}" image exists "$BASE_TAG"; then
  if [ ! -x "$WORK/rootfs/usr/bin/python3" ]; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR"
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  fi
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$BASE_TAG"
fi
"${PODMAN[@]}" run --rm "${LIMITS[@]}" "$BASE_TAG" python3 --version

step "2/5 build images/train.Dockerfile on that base"
INDEX_MOUNTS=() INDEX_URLS=""
for index in $LOCAL_INDEXES; do
  INDEX_MOUNTS+=(--volume "$index:$index:ro")
  INDEX_URLS+="file://$index/simple "
done
"${PODMAN[@]}" build "${LIMITS[@]}" --network host \
  --ignorefile "$ROOT/images/train.Dockerfile.dockerignore" \
  --volume "$WHEELS:/wheels:ro" "${INDEX_MOUNTS[@]}" \
  --volume "$HOST_CA:/run/build-ca.crt:ro" \
  --build-arg BASE_IMAGE="$BASE_TAG" \
  --build-arg TORCH_SPEC="torch==2.13.0+cpu" \
  --build-arg PIP_FIND_LINKS=/wheels \
  --build-arg PIP_EXTRA_INDEX_URL="$INDEX_URLS" \
  --build-arg PIP_CERT=/run/build-ca.crt \
  -f "$ROOT/images/train.Dockerfile" -t "$IMAGE_TAG" "$ROOT"

step "3/5 entrypoint: state --help, as the non-root user"
"${PODMAN[@]}" run --rm "${LIMITS[@]}" "$IMAGE_TAG" --help | head -3
"${PODMAN[@]}" run --rm "${LIMITS[@]}" --entrypoint sh "$IMAGE_TAG" -c \
  'test "$(id -u)" = 10001 && python3 -c "import torch, kfp, state_core, components, pipelines; print(\"uid\", __import__(\"os\").getuid(), \"torch\", torch.__version__, \"kfp\", kfp.__version__)"'

step "4/5 compile the training pipeline here, pinned to the image's digest"
DIGEST="$("${PODMAN[@]}" image inspect --format '{{.Digest}}' "$IMAGE_TAG")"
RUN="$WORK/run"
rm -rf "$RUN" && mkdir -p "$RUN" && chmod 0777 "$RUN"    # the image's uid 10001 writes here
(cd "$ROOT" && PYTHONPATH="$ROOT" "$PYTHON" -m state_core.cli.main pipeline compile train \
  --out "$RUN/train.yaml" --image "$IMAGE_TAG" --image-digest "$DIGEST")
grep -c "image: $IMAGE_TAG@$DIGEST" "$RUN/train.yaml"

step "5/5 run compiled tasks in the image: synthetic data, data fingerprint, split"
"${PODMAN[@]}" run --rm "${LIMITS[@]}" --volume "$RUN:$RUN" "$IMAGE_TAG" data synth --out "$RUN/data" \
  --n-cells 1500 --n-genes 120 --n-perturbations 8 --num-hvgs 32
task() { "$PYTHON" "$ROOT/images/run_component.py" --yaml "$RUN/train.yaml" --image "$IMAGE_TAG" \
  --engine "${PODMAN[*]}" --engine-args "${LIMITS[*]} --volume $RUN/data:$RUN/data:ro" "$@"; }
task --executor exec-fingerprint-data --work "$RUN/fingerprint" --param experiment_toml="$RUN/data/fewshot.toml"
FINGERPRINT="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["parameterValues"]["Output"])' \
  "$RUN/fingerprint/executor_output.json")"
task --executor exec-split-cells --work "$RUN/split" --param experiment_toml="$RUN/data/fewshot.toml" \
  --param data_fingerprint="$FINGERPRINT" --param seed=0 --param pert_col=gene --param cell_type_key=cell_type \
  --param batch_col=gem_group --param control_pert=non-targeting
test -s "$RUN/split/outputs/split/split_manifest.npz" && head -12 "$RUN/split/outputs/summary"
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Digest}} {{.Size}}' | grep -E 'state-train|bookworm-python'
step "OK: the image builds, and tasks compiled from this checkout run in it"

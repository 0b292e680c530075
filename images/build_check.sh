#!/usr/bin/env bash
# Prove images/train.Dockerfile builds and its entrypoint runs, on a machine with no registry access.
#
#   sudo images/build_check.sh            # logs to stdout; takes minutes (debootstrap + pip), not run in CI
#
# Steps: (1) debootstrap a Debian bookworm root with python3 and import it as the base image,
# (2) podman build with that base and the CPU torch wheel from $WHEELS (the CUDA wheel is gigabytes and is
# what the real build pulls from PyPI), (3) run the entrypoint: `state --help`, a pipeline compile and a
# non-root check. Needs: podman, debootstrap, network to a Debian mirror and to PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/var/tmp/state-build-check}"
WHEELS="${WHEELS:-/opt/wheels}"                       # must hold torch-2.13.0+cpu for python 3.11
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
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

step "1/4 base image from debootstrap (bookworm + python3)"
if ! "${PODMAN[@]}" image exists "$BASE_TAG"; then
  if [ ! -x "$WORK/rootfs/usr/bin/python3" ]; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR"
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  fi
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$BASE_TAG"
fi
"${PODMAN[@]}" run --rm "${LIMITS[@]}" "$BASE_TAG" python3 --version

step "2/4 build images/train.Dockerfile on that base"
"${PODMAN[@]}" build "${LIMITS[@]}" --network host \
  --ignorefile "$ROOT/images/train.Dockerfile.dockerignore" \
  --volume "$WHEELS:/wheels:ro" \
  --volume "$HOST_CA:/run/build-ca.crt:ro" \
  --build-arg BASE_IMAGE="$BASE_TAG" \
  --build-arg TORCH_SPEC="torch==2.13.0+cpu" \
  --build-arg PIP_FIND_LINKS=/wheels \
  --build-arg PIP_CERT=/run/build-ca.crt \
  -f "$ROOT/images/train.Dockerfile" -t "$IMAGE_TAG" "$ROOT"

step "3/4 entrypoint: state --help"
"${PODMAN[@]}" run --rm "${LIMITS[@]}" "$IMAGE_TAG" --help

step "4/4 entrypoint: compile the training pipeline inside the image, as a non-root user"
"${PODMAN[@]}" run --rm "${LIMITS[@]}" "$IMAGE_TAG" pipeline compile --out /tmp/train.yaml
"${PODMAN[@]}" run --rm "${LIMITS[@]}" --entrypoint sh "$IMAGE_TAG" -c \
  'test "$(id -u)" = 10001 && python3 -c "import torch, kfp, state_core, components, pipelines; print(\"uid\", __import__(\"os\").getuid(), \"torch\", torch.__version__, \"kfp\", kfp.__version__)"'
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'state-train|bookworm-python'
step "OK: image builds and its entrypoint runs"

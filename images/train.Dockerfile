# The training / pipeline image: state_core, the `state` CLI, KFP components and a CUDA build of torch.
# Every KFP task of pipelines/ runs in this image (`python3 -m kfp.dsl.executor_main`, no pip at pod start).
#
#   docker build -f images/train.Dockerfile -t <registry>/state-train:0.1.0 .
#
# torch from PyPI bundles its CUDA libraries as nvidia-* wheels, so a plain Debian Python base is enough; the
# node only needs the NVIDIA driver. BASE_IMAGE / TORCH_SPEC / PIP_* exist so images/build_check.sh
# can build offline from a locally made base with the CPU wheel.
ARG BASE_IMAGE=docker.io/library/python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_SPEC="torch==2.13.0"
# Optional pip settings for offline/proxied builds; build args reach RUN steps (and pip's build-isolation
# subprocesses) as environment variables, and never reach the final stage.
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/state
ENV PATH=/opt/state/bin:$PATH
# Every run-time dependency at the exact version CI tested (images/write_constraints.py writes the file).
COPY images/train-constraints.txt /src/constraints.txt
# torch first and alone: it is the big, rarely changing layer, and installing it before the project keeps
# the resolver from choosing another build.
RUN pip install -c /src/constraints.txt "${TORCH_SPEC}"
COPY pyproject.toml README.md /src/
COPY state_core /src/state_core
COPY components /src/components
COPY pipelines /src/pipelines
RUN pip install -c /src/constraints.txt "/src[pipelines,serve,gcs]" && pip check

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="state-train" \
      org.opencontainers.image.description="State models: training, evaluation, export and KFP components"
# A fixed non-root uid, so Kubernetes runAsNonRoot policies and GCS fuse mounts know who writes.
RUN groupadd --gid 10001 state && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin state
COPY --from=build /opt/state /opt/state
ENV PATH=/opt/state/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/state
ENTRYPOINT ["state"]
CMD ["--help"]

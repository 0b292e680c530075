# The serving image: the official Triton Inference Server with the ONNX Runtime backend, run as non-root.
# The model repository is not baked in: the Deployment (manifests/triton-deployment.yaml) points Triton at
# gs://... and reads it with workload identity, so a new model version needs no new image.
#
#   docker build -f images/serve.Dockerfile -t <registry>/state-serve:24.10 .
#
# 24.10 = Triton 2.51.0, the same server core as the PyTriton wheel we test with locally (docs/pipelines.md).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}
LABEL org.opencontainers.image.title="state-serve" \
      org.opencontainers.image.description="Triton serving State ONNX models from a model repository"
# The NGC image ships the unprivileged user triton-server (uid 1000).
USER 1000:1000
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/models", "--strict-readiness=true", "--exit-on-error=false"]

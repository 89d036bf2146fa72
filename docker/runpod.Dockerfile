# The image a TradeCore RunPod pod runs (configs/runpod/*.json "image").
#
#   docker build -f docker/runpod.Dockerfile --build-arg TRADECORE_CODE_VERSION=$(git rev-parse HEAD) \
#       -t ghcr.io/<you>/tradecore-runpod:$(git rev-parse --short HEAD) .
#   docker push ghcr.io/<you>/tradecore-runpod:<tag>
#
# RunPod's PyTorch image brings CUDA and a CUDA build of torch (inside the project's
# "torch>=2.4,<=2.13.0" range, so pip keeps it); the pod needs the training code and
# dagster-pipes only, never the Dagster instance. The pod's start command is set by
# PipesRunPodClient (python -m tradecore_lib.pod -- python -m tradecore_lib.train.ppo_train ...).
FROM runpod/pytorch:2.8.0-py3.11-cuda12.8.1-cudnn-devel-ubuntu22.04

ARG TRADECORE_CODE_VERSION=unknown
# Recorded in every run's lineage.json (there is no git checkout in the image).
ENV TRADECORE_CODE_VERSION=${TRADECORE_CODE_VERSION} \
    PYTHONUNBUFFERED=1

WORKDIR /opt/tradecore
COPY pyproject.toml README.md ./
COPY tradecore_lib tradecore_lib
COPY tradecore_pipelines tradecore_pipelines
COPY configs configs
RUN pip install --no-cache-dir -e . \
    && python -c "import torch, stable_baselines3, dagster_pipes, talib, runpod; print(torch.__version__)"

# Base image of gpu model servers: the CUDA runtime, Python and the server's wheels.
#
# Built like cpu/python.Dockerfile (see there). torch comes from the wheelhouse as the CUDA
# build of the version that traced the models; run with --gpus (the NVIDIA container
# toolkit brings the driver). Not exercised by doinfer's CI, which has no GPU.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${BASE_IMAGE} AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

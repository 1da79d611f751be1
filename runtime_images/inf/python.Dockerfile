# Base image of inf (AWS Inferentia) model servers: the Neuron runtime library from AWS's
# apt repository, Python, torch-neuronx and the server's wheels.
#
# Built like cpu/python.Dockerfile (see there); the wheelhouse carries torch-neuronx from AWS's
# pip repository instead of torch. Containers get the host's /dev/neuron* devices; the
# Neuron driver itself stays on the host. Not exercised by doinfer's CI (no Inferentia).
ARG BASE_IMAGE=ubuntu:22.04

FROM ${BASE_IMAGE} AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates gnupg python3 python3-venv wget \
 && . /etc/os-release \
 && echo "deb https://apt.repos.neuron.amazonaws.com ${VERSION_CODENAME} main" \
      > /etc/apt/sources.list.d/neuron.list \
 && wget -qO - https://apt.repos.neuron.amazonaws.com/GPG-PUB-KEY-AMAZON-AWS-NEURON.PUB \
      | gpg --dearmor > /etc/apt/trusted.gpg.d/neuron.gpg \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      aws-neuronx-runtime-lib aws-neuronx-collectives \
 && rm -rf /var/lib/apt/lists/*
# in the final image too, where the install stages put doinfer's venv before it
ENV PATH=/opt/aws/neuron/bin:$PATH

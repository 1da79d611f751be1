# Base image of cpu model servers: Python and the server's wheels, nothing else.
#
# doinfer builds it in three steps (engine/runtimes/docker_images.py): the `python` stage
# alone, to ask it which Python it has; then, with a wheelhouse that doinfer downloaded on
# the host for exactly that Python and platform, the `install` stage and the final image.
# pip installs with --no-index: the build needs no package index and no proxy certificate.
# The wheelhouse stays in the `install` stage and never reaches the image.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS python
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

#!/usr/bin/env sh
# mmdebstrap's customize hook for the stand-in of python:3.11-slim-bookworm (run on the host,
# $1 is the new root): Debian's python3.11 shaped like the official image. Ours only, for
# the engine of `make images`; never pushed (docs/containers.md, "The stand-in base").
set -eu
root=$1

# The official image's `python`, `python3`, `pip`, `pip3` in /usr/local/bin, first on PATH.
for name in python python3 python3.11; do ln -sf /usr/bin/python3.11 "$root/usr/local/bin/$name"; done
for name in pip pip3 pip3.11; do ln -sf /usr/bin/pip3 "$root/usr/local/bin/$name"; done
# Debian's Python refuses `pip install` outside a virtualenv (PEP 668); the official one
# does not, and our Dockerfiles install into the system Python. As root, pip then installs
# into /usr/local/lib/python3.11/dist-packages, scripts into /usr/local/bin.
rm -f "$root/usr/lib/python3.11/EXTERNALLY-MANAGED"

# This machine reaches PyPI through an intercepting egress proxy: the stand-in trusts the
# certificate authorities the host added (the official image trusts Debian's set only).
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1  # its rehash warns of the bundle itself
fi

# Builds mount the host's local wheels here (PIP_FIND_LINKS, read-only); pip looks there
# first, e.g. for PyTorch's CPU build, which PyPI's torch==X (the CUDA build) would replace
# with 2.7 GB of downloads. Empty when nothing is mounted.
mkdir -p "$root/wheels"
printf '[global]\nfind-links = /wheels\n' > "$root/etc/pip.conf"

# Like the official slim image: no apt lists (a Dockerfile's `apt-get update` fetches them).
rm -rf "$root"/var/lib/apt/lists/*

#!/bin/sh
# Copy the images kind preloaded into containerd's k8s.io namespace (kube-apiserver, etcd,
# pause, kindnet, ...) into dockerd, where the docker adapter looks for images.
set -eu
refs=$(ctr --namespace=k8s.io images ls -q | grep -v '^sha256:' || true)
[ -n "$refs" ] || exit 0
# shellcheck disable=SC2086 # one argument per reference
ctr --namespace=k8s.io images export --platform "linux/$(dpkg --print-architecture)" - $refs \
  | docker load

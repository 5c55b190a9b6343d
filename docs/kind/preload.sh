#!/bin/sh
# Run once inside a container of the freshly built node image (see ../kind.md, step 2):
# copies the images kind preloaded into containerd's k8s.io namespace (kube-apiserver,
# etcd, pause, kindnetd, ...) into dockerd, where the docker adapter finds them. The
# container is then committed as the node image, so no node copies images at boot.
set -eu
containerd_pid=
if ! ctr version >/dev/null 2>&1; then
	containerd >/var/log/preload-containerd.log 2>&1 &
	containerd_pid=$!
fi
dockerd >/var/log/preload-dockerd.log 2>&1 &
dockerd_pid=$!
tries=0
until docker info >/dev/null 2>&1 && ctr version >/dev/null 2>&1; do
	tries=$((tries + 1))
	[ "$tries" -lt 60 ] || { echo "preload: dockerd or containerd did not start" >&2; exit 1; }
	sleep 1
done
refs=$(ctr --namespace=k8s.io images ls -q | grep -v '^sha256:' || true)
if [ -n "$refs" ]; then
	# shellcheck disable=SC2086 # one argument per reference
	ctr --namespace=k8s.io images export --platform "linux/$(dpkg --print-architecture)" - $refs |
		docker load
fi
docker images
kill "$dockerd_pid"
wait "$dockerd_pid" || true
if [ -n "$containerd_pid" ]; then
	kill "$containerd_pid"
	wait "$containerd_pid" || true
fi

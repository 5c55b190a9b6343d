#!/usr/bin/env bash
# The node image of the node-container tests: Debian 12 booting systemd as PID 1,
# with the packages a node of either adapter needs, the way kind's node image is a
# Debian with systemd. Built with debootstrap from the machine's own Debian mirror,
# imported into dockerd and tagged with a hash of its inputs (this script, the entry
# point, the package list, the mirror), so a second run finds it and builds nothing.
#
#   nodeimage.sh build    build the image unless the tagged one is there; print its name
#   nodeimage.sh name     print the image name its inputs give (built or not)
#   nodeimage.sh prune    remove node images of older inputs
set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INIT=$REPO_DIR/scripts/node/init.sh
REPOSITORY=pycrid-node
SUITE=bookworm
DOCKER=/usr/bin/docker
export DOCKER_HOST=unix:///var/run/docker.sock

PACKAGES=systemd,systemd-sysv,dbus,iproute2,procps,iptables,ca-certificates,python3,python3-venv,runc,conmon,containernetworking-plugins,docker.io,mount,util-linux

mirror() {
	# The first Debian URI apt uses here (deb822 or one-line format).
	local uri
	uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{print $2}' | grep -v security | head -n 1 || true)
	if [[ -z $uri ]]; then
		uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '{print $2}' | grep -v security | head -n 1 || true)
	fi
	echo "${uri:-http://deb.debian.org/debian}"
}

name() {
	local sum
	sum=$({
		cat "${BASH_SOURCE[0]}" "$INIT"
		echo "$PACKAGES $SUITE $(mirror)"
	} | sha256sum | cut -c1-16)
	echo "$REPOSITORY:$sum"
}

build() {
	local image started
	image=$(name)
	if $DOCKER image inspect "$image" >/dev/null 2>&1; then
		echo "$image"
		return
	fi
	command -v debootstrap >/dev/null || apt-get install -y debootstrap >&2
	started=$(date +%s)
	ROOTFS=$(mktemp -d /var/tmp/pycrid-node.XXXXXX)
	trap 'rm -rf "$ROOTFS"' EXIT
	local rootfs=$ROOTFS
	echo "nodeimage: debootstrap $SUITE from $(mirror)" >&2
	debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$(mirror)" >&2
	install -m 0755 "$INIT" "$rootfs/usr/local/sbin/node-init"
	# What kind's node image does too: no getty, no units that need real hardware.
	rm -f "$rootfs"/etc/systemd/system/getty.target.wants/*
	ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-udevd.service"
	ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-remount-fs.service"
	ln -sf /dev/null "$rootfs/etc/systemd/system/docker.service"
	ln -sf /dev/null "$rootfs/etc/systemd/system/docker.socket"
	ln -sf /dev/null "$rootfs/etc/systemd/system/containerd.service"
	echo node >"$rootfs/etc/hostname"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | $DOCKER import \
		--change 'ENV container=docker' \
		--change 'ENTRYPOINT ["/usr/local/sbin/node-init"]' \
		- "$image" >&2
	echo "nodeimage: built $image in $(($(date +%s) - started)) s" >&2
	echo "$image"
}

prune() {
	local current
	current=$(name)
	$DOCKER images --format '{{.Repository}}:{{.Tag}}' "$REPOSITORY" |
		grep -vxF "$current" | xargs -r $DOCKER rmi >/dev/null
}

case ${1:-build} in
build) build ;;
name) name ;;
prune) prune ;;
*) echo "usage: $0 build|name|prune" >&2 && exit 2 ;;
esac

#!/bin/sh
# The node container's entry point: a cgroup tree of the node's own, then systemd.
#
# The container gets a private cgroup namespace and no cgroup mount from the
# host. This mounts a tmpfs on /sys/fs/cgroup and each cgroup v1 hierarchy the
# kernel has (as /proc/1/cgroup lists them) inside it, so systemd sees its own
# subtree as the root and can never write into the host's tree.
set -eu

mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup /sys/fs/cgroup
while IFS=: read -r _ controllers _; do
	case $controllers in
	"") continue ;;                   # the unified hierarchy (held by the host)
	name=systemd) dir=systemd options=none,name=systemd ;;
	name=*) continue ;;
	*) dir=$controllers options=$controllers ;;
	esac
	mkdir -p "/sys/fs/cgroup/$dir"
	mount -t cgroup -o "nosuid,nodev,noexec,$options" cgroup "/sys/fs/cgroup/$dir"
	# cpu,cpuacct mounted together is also reachable as cpu and cpuacct.
	case $dir in *,*)
		for one in $(echo "$dir" | tr , ' '); do
			[ -e "/sys/fs/cgroup/$one" ] || ln -s "$dir" "/sys/fs/cgroup/$one"
		done
	esac
done </proc/1/cgroup

exec /lib/systemd/systemd "$@"

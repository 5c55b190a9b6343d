#!/usr/bin/env bash
# Usage: busybox-rootfs.sh DIR
#
# Fills DIR with a minimal root file system built from Debian's busybox-static:
# /bin/busybox, every applet as a HARD link to it, and the usual /etc/passwd and
# /etc/group of the upstream busybox image.
#
# Why hard links: Debian's busybox-static prefers its own applets and runs them
# in-process, so a symlinked tree looks fine until something execs a program by
# path (`sh -c ls` must find a real /bin/ls). A hard link is a real file there.
set -euo pipefail

BUSYBOX=/bin/busybox

make_rootfs() {
	local root=$1 applet
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var/www,tmp}
	chmod 1777 "$root/tmp"
	chmod 0700 "$root/root"
	cp "$BUSYBOX" "$root/bin/busybox"
	while read -r applet; do
		case $applet in
		bin/busybox | linuxrc) continue ;;
		esac
		mkdir -p "$root/$(dirname "$applet")"
		ln -f "$root/bin/busybox" "$root/$applet"
	done < <("$BUSYBOX" --list-full)
	write_passwd >"$root/etc/passwd"
	write_group >"$root/etc/group"
	write_pgrep >"$root/bin/pgrep"
	write_ipcs >"$root/bin/ipcs"
	chmod 0755 "$root/bin/pgrep" "$root/bin/ipcs"
}

# Nor has it ipcs; critest lists shared memory segments with `ipcs -m`.
write_ipcs() {
	cat <<'IPCS'
#!/bin/sh
# ipcs -m: the System V shared memory segments of this IPC namespace.
[ "$*" = "-m" ] || { echo "usage: ipcs -m" >&2; exit 2; }
echo "------ Shared Memory Segments --------"
cat /proc/sysvipc/shm
IPCS
}

# Debian's busybox has no pgrep applet; critest checks processes with one.
write_pgrep() {
	cat <<'PGREP'
#!/bin/sh
# pgrep PATTERN: print the pids of processes whose name matches PATTERN.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
status=1
for dir in /proc/[0-9]*; do
	pid=${dir#/proc/}
	[ "$pid" = "$$" ] && continue
	read -r name <"$dir/comm" 2>/dev/null || continue
	if echo "$name" | grep -q -- "$1"; then
		echo "$pid"
		status=0
	fi
done
exit $status
PGREP
}

write_passwd() {
	cat <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
}

write_group() {
	cat <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
staff:x:50:
users:x:100:
nogroup:x:65534:
GROUP
}

if [[ $# -ne 1 ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
make_rootfs "$1"

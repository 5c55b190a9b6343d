#!/usr/bin/env bash
# Set up and start the pycrid daemon with the docker adapter on the default
# socket, unix:///run/pycrid/pycrid.sock. Installs what it needs first: the
# Debian packages, dockerd, and a local registry holding the pause image,
# which the default configuration uses as a mirror of registry.k8s.io.
#
#   bash scripts/run.sh          start (or keep) the daemon in the background
#   bash scripts/run.sh stop     stop it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

CONFIG=/etc/pycrid/config.toml
CNI_CONF_DIR=/etc/cni/net.d
LOG=/var/log/pycrid.log
PIDFILE=/run/pycrid/pycrid.pid
SOCKET=/run/pycrid/pycrid.sock

running() {
	[[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

stop() {
	if running; then
		kill -TERM "$(cat "$PIDFILE")"
		for _ in $(seq 100); do running || break; sleep 0.1; done
	fi
	rm -f "$PIDFILE"
}

write_default_config() {
	[[ -f $CONFIG ]] && return 0
	mkdir -p "$(dirname "$CONFIG")"
	cat >"$CONFIG" <<'TOML'
# pycrid configuration (see docs/configuration.md). Flags override these keys.
adapter = "docker"
listen = "unix:///run/pycrid/pycrid.sock"
pause_image = "registry.k8s.io/pause:3.10"

[network]
mode = "cni"

# This machine has no route to the public registries: serve their images from
# the local registry that scripts/testenv.sh starts. Remove on a connected node.
[registries."registry.k8s.io"]
mirrors = ["http://127.0.0.1:5000"]

[registries."127.0.0.1:5000"]
insecure = true
TOML
}

install_cni_config() {
	mkdir -p "$CNI_CONF_DIR"
	if ! compgen -G "$CNI_CONF_DIR/*.conf*" >/dev/null; then
		cp "$REPO_DIR/docs/cni/10-pycrid-bridge.conflist" "$CNI_CONF_DIR/"
	fi
}

start() {
	[[ $(id -u) -eq 0 ]] || { echo "run.sh must run as root" >&2; exit 1; }
	bash "$REPO_DIR/scripts/testenv.sh" up >/dev/null
	ensure_venv
	write_default_config
	install_cni_config
	if running; then
		echo "pycrid is already running (pid $(cat "$PIDFILE")) on unix://$SOCKET"
		return 0
	fi
	mkdir -p "$(dirname "$PIDFILE")"
	setsid "$VENV/bin/pycrid" serve --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 300); do
		if [[ -S $SOCKET ]]; then
			echo "pycrid is serving on unix://$SOCKET (log: $LOG)"
			return 0
		fi
		running || break
		sleep 0.1
	done
	echo "pycrid did not start; last lines of $LOG:" >&2
	tail -n 20 "$LOG" >&2
	exit 1
}

case ${1:-start} in
start) start ;;
stop) stop ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

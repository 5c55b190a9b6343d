#!/usr/bin/env bash
# The test environment of pycrid on a Debian 12 host (run as root):
#
#   testenv.sh up      install what is missing, start dockerd and a local registry
#                      on 127.0.0.1:5000, build and push the test images (unless the
#                      registry serves the very manifests the last build pushed), and
#                      build the node image of crictl_tests/nodes/ (scripts/nodeimage.sh,
#                      about 2 minutes once, then cached by the hash of its inputs)
#   testenv.sh down    stop the dockerd and registry that `up` started
#   testenv.sh status  say whether each part is up
#
# The registry stands in for registry.k8s.io and gcr.io: it serves the test images
# under the same repository paths (pycrid reaches it through registry mirror
# settings). Every image is built FROM scratch out of Debian's busybox-static and
# the project's own pause program, without any network access.
set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGES_DIR=$REPO_DIR/images
STATE_DIR=/var/lib/pycrid-testenv
RUN_DIR=/run/pycrid-testenv
LOG_DIR=/var/log/pycrid-testenv
REGISTRY=127.0.0.1:5000
REGISTRY_CONFIG=$STATE_DIR/registry.yml
# The manifest digest of every image reference as the last build pushed it, under
# the hash of the sources it was built from (see ensure_images).
PUSHED=$STATE_DIR/images.pushed
DOCKER_SOCK=/var/run/docker.sock

# Debian's client, which matches its 20.10 daemon; another docker on PATH may be
# newer and want BuildKit, which this daemon has no plugin for.
DOCKER=/usr/bin/docker
export DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_BUILDKIT=0

PACKAGES=(docker.io runc conmon containernetworking-plugins busybox-static docker-registry
	socat iptables gcc libc6-dev make curl iproute2 debootstrap)

BUSYBOX_IMAGE=e2e-test-images/busybox:1.29-2
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# One line per image reference in the registry: reference, how it is built, and an
# argument for the builder (see the build_* functions). Order matters: the busybox
# image comes first (the others are built FROM it) and a `tag` follows its source.
IMAGE_TABLE="
e2e-test-images/busybox:1.29-2                               busybox          -
pause:3.10                                                   pause            3.10
pause:3.9                                                    pause            3.9
e2e-test-images/nonewprivs:1.3                               nonewprivs       -
e2e-test-images/httpd:2.4.39-4                               web              80
e2e-test-images/nginx:1.14-2                                 nginx            80
k8s-staging-cri-tools/hostnet-nginx-amd64:latest             nginx            12003
k8s-staging-cri-tools/test-image-user-uid:latest             user             1002
k8s-staging-cri-tools/test-image-user-username:latest        user             www-data
k8s-staging-cri-tools/test-image-user-uid-group:latest       user             1003:1003
k8s-staging-cri-tools/test-image-user-username-group:latest  user             www-data:www-data
k8s-staging-cri-tools/test-image-predefined-group:latest      predefined_group 1000
k8s-staging-cri-tools/test-image-1:latest                    plain            -
k8s-staging-cri-tools/test-image-2:latest                    plain            -
k8s-staging-cri-tools/test-image-3:latest                    plain            -
k8s-staging-cri-tools/test-image-tag:test                    plain            -
k8s-staging-cri-tools/test-image-tag:all                     plain            -
k8s-staging-cri-tools/test-image-latest:latest               plain            -
k8s-staging-cri-tools/test-image-tags:1                      plain            -
k8s-staging-cri-tools/test-image-tags:2                      tag              k8s-staging-cri-tools/test-image-tags:1
k8s-staging-cri-tools/test-image-tags:3                      tag              k8s-staging-cri-tools/test-image-tags:1
k8s-staging-cri-tools/test-image-digest:latest               plain            -
pycrid/multilayer:latest                                     multilayer       4
"

# ---------------------------------------------------------------- messages

die() {
	local message=$1 log=${2:-}
	echo "testenv: $message" >&2
	if [[ -n $log && -s $log ]]; then
		echo "--- last lines of $log:" >&2
		tail -n 25 "$log" >&2
	fi
	exit 1
}

on_unexpected_error() {
	echo "testenv: failed at line $1: $2" >&2
}
trap 'on_unexpected_error "$LINENO" "$BASH_COMMAND"' ERR

# run_logged LOG COMMAND...: run COMMAND with its output appended to LOG; on
# failure, say so and show the end of LOG.
run_logged() {
	local log=$1
	shift
	if ! "$@" >>"$log" 2>&1; then
		die "failed: $*" "$log"
	fi
}

# ---------------------------------------------------------------- packages

missing_packages() {
	local installed
	installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null |
		awk '$1 == "ii" { print $2 }') || true
	local package
	for package in "${PACKAGES[@]}"; do
		grep -qxF "$package" <<<"$installed" || echo "$package"
	done
}

# Another apt-get may be running on this machine; wait for it instead of failing.
# apt-get itself waits for the dpkg lock (DPkg::Lock::Timeout) but not for the
# lock of its package lists, so `update` needs this.
wait_for_apt() {
	local waited=0
	command -v fuser >/dev/null || return 0
	while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
		>/dev/null 2>&1; do
		((waited++ < 600)) || die "apt is still busy after 10 minutes"
		sleep 1
	done
}

apt_get() {
	wait_for_apt
	DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "$@"
}

install_packages() {
	local missing log=$LOG_DIR/apt.log
	mapfile -t missing < <(missing_packages)
	((${#missing[@]})) || return 0
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		run_logged "$log" apt_get update
	fi
	if ! apt_get install --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
		# Stale package lists are the usual cause; refresh them once and retry.
		run_logged "$log" apt_get update
		run_logged "$log" apt_get install --no-install-recommends "${missing[@]}"
	fi
}

# ---------------------------------------------------------------- daemons

docker_answers() {
	curl -fsS --max-time 5 --unix-socket "$DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1
}

registry_answers() {
	curl -fsS --max-time 5 "http://$REGISTRY/v2/" >/dev/null 2>&1
}

# start_daemon NAME COMMAND...: start COMMAND in its own session, detached from
# this script, logging to LOG_DIR/NAME.log and with its pid in RUN_DIR/NAME.pid.
start_daemon() {
	local name=$1
	shift
	# The shell writes its own pid and then execs the daemon, so the pid file is
	# right whether or not setsid had to fork. The daemon must not inherit the
	# lock (fd 9), or it would hold it for as long as it runs.
	# shellcheck disable=SC2016 # $$ and $@ are for the inner shell
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
		</dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&- &
}

# wait_until NAME CHECK SECONDS: wait for CHECK to succeed while the daemon NAME
# is alive.
wait_until() {
	local name=$1 check=$2 seconds=$3 pid i
	for ((i = 0; i < seconds * 4; i++)); do
		"$check" && return 0
		pid=$(cat "$RUN_DIR/$name.pid" 2>/dev/null) || pid=
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			die "$name exited during startup" "$LOG_DIR/$name.log"
		fi
		sleep 0.25
	done
	die "$name did not answer within $seconds s" "$LOG_DIR/$name.log"
}

start_dockerd() {
	docker_answers && return 0
	start_daemon dockerd dockerd \
		--storage-driver overlay2 \
		--exec-opt native.cgroupdriver=cgroupfs
	wait_until dockerd docker_answers 60
	# The socket answers a little before the API is fully usable.
	wait_until dockerd docker_version_answers 30
}

docker_version_answers() {
	timeout 10 "$DOCKER" version >/dev/null 2>&1
}

write_registry_config() {
	cat >"$REGISTRY_CONFIG.tmp" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY
EOF
	mv "$REGISTRY_CONFIG.tmp" "$REGISTRY_CONFIG"
}

start_registry() {
	registry_answers && return 0
	write_registry_config
	start_daemon registry /usr/bin/docker-registry serve "$REGISTRY_CONFIG"
	wait_until registry registry_answers 30
}

# stop_daemon NAME PROGRAM: stop the daemon that start_daemon started, if it
# still runs (and its pid has not gone to another program since).
stop_daemon() {
	local name=$1 program=$2 pidfile=$RUN_DIR/$1.pid pid i
	pid=$(cat "$pidfile" 2>/dev/null) || return 0
	if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$program" ]]; then
		kill -TERM "$pid"
		# dockerd stops its containers first; give it time.
		for ((i = 0; i < 120; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid"
			echo "testenv: $name did not stop in 30 s; killed it" >&2
		fi
	fi
	rm -f "$pidfile"
}

# ---------------------------------------------------------------- images

image_refs() {
	awk 'NF { print $1 }' <<<"$IMAGE_TABLE"
}

# A hash of everything the images are made of: this script, images/, and the
# Debian packages whose files go into them.
image_sources_hash() {
	{
		cd "$REPO_DIR"
		find scripts/testenv.sh images -type f -print0 | sort -z | xargs -0 sha256sum
		dpkg-query -W busybox-static gcc libc6-dev
	} | sha256sum | cut -d' ' -f1
}

# registry_digests: one line per image reference, "REF DIGEST", with the digest of
# the manifest the registry serves for it ("-" when it serves none). One curl
# for all of them: a few milliseconds on loopback.
registry_digests() {
	local refs ref digests urls=() i
	mapfile -t refs < <(image_refs)
	for ref in "${refs[@]}"; do
		urls+=("http://$REGISTRY/v2/${ref%:*}/manifests/${ref##*:}")
	done
	mapfile -t digests < <(curl -sS --max-time 20 -I \
		-w 'DIGEST %{http_code} %header{docker-content-digest}\n' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
		-H 'Accept: application/vnd.oci.image.index.v1+json' \
		"${urls[@]}" 2>/dev/null | awk '$1 == "DIGEST" { print ($2 == 200 && $3 != "" ? $3 : "-") }')
	for i in "${!refs[@]}"; do
		echo "${refs[i]} ${digests[i]:--}"
	done
}

# True when the registry serves, for every image reference, the very manifest
# that a build from the current sources pushed.
images_current() {
	[[ -f $PUSHED ]] || return 1
	[[ $(head -n 1 "$PUSHED") == "sources $(image_sources_hash)" ]] || return 1
	[[ $(tail -n +2 "$PUSHED") == "$(registry_digests)" ]]
}

# new_context REF: make an empty build context for REF and print its path.
new_context() {
	local dir=$WORK_DIR/${1//[\/:]/_}
	mkdir -p "$dir/rootfs"
	echo "$dir"
}

# derived_context REF: a build context whose rootfs/ holds /image-name, so that
# every image built FROM busybox has its own content and ID.
derived_context() {
	local dir
	dir=$(new_context "$1")
	echo "$1" >"$dir/rootfs/image-name"
	echo "$dir"
}

# build_image REF CONTEXT DOCKERFILE_LINE...
build_image() {
	local ref=$1 dir=$2
	shift 2
	printf '%s\n' "$@" >"$dir/Dockerfile"
	# Fixed file times make the layers byte-identical from one build to the next.
	find "$dir" -exec touch -h -d @946684800 {} +
	run_logged "$BUILD_LOG" "$DOCKER" build -t "$REGISTRY/$ref" "$dir"
}

# build_derived REF CONTEXT DOCKERFILE_LINE...: an image FROM busybox plus CONTEXT/rootfs.
build_derived() {
	local ref=$1 dir=$2
	shift 2
	build_image "$ref" "$dir" "FROM $REGISTRY/$BUSYBOX_IMAGE" "COPY rootfs/ /" "$@"
}

build_busybox() {
	local dir
	dir=$(new_context "$1")
	run_logged "$BUILD_LOG" bash "$IMAGES_DIR/busybox-rootfs.sh" "$dir/rootfs"
	BASE_ROOTFS=$dir/rootfs
	build_image "$1" "$dir" 'FROM scratch' 'COPY rootfs/ /' "ENV PATH=$IMAGE_PATH" 'CMD ["sh"]'
}

# build_pause REF VERSION: the project's pause program. Upstream's pause
# versions are different images, so the version is a label here.
build_pause() {
	local dir
	dir=$(new_context "$1")
	run_logged "$BUILD_LOG" gcc -static -O2 -s -Wall -Wextra -o "$dir/pause" "$IMAGES_DIR/pause/pause.c"
	build_image "$1" "$dir" 'FROM scratch' 'COPY pause /pause' "LABEL version=$2" \
		'ENTRYPOINT ["/pause"]'
}

build_plain() {
	build_derived "$1" "$(derived_context "$1")"
}

# web_context REF: a build context with the web root.
web_context() {
	local dir
	dir=$(derived_context "$1")
	mkdir -p "$dir/rootfs/www" "$dir/rootfs/usr/local/bin" "$dir/rootfs/usr/sbin" "$dir/rootfs/var/run"
	cp "$IMAGES_DIR/web/index.html" "$dir/rootfs/www/"
	echo "$dir"
}

# build_web REF PORT: busybox httpd serving /www on PORT in the foreground
# (images/web/serve-web), standing in for Apache httpd.
build_web() {
	local dir
	dir=$(web_context "$1")
	cp "$IMAGES_DIR/web/serve-web" "$dir/rootfs/usr/local/bin/"
	build_derived "$1" "$dir" "EXPOSE $2" "CMD [\"/usr/local/bin/serve-web\", \"$2\"]"
}

# build_nginx REF PORT: the same server under a master process that behaves
# like nginx's (images/web/nginx.c).
build_nginx() {
	local dir
	dir=$(web_context "$1")
	run_logged "$BUILD_LOG" gcc -static -O2 -s -Wall -Wextra \
		-o "$dir/rootfs/usr/sbin/nginx" "$IMAGES_DIR/web/nginx.c"
	build_derived "$1" "$dir" "EXPOSE $2" "CMD [\"/usr/sbin/nginx\", \"$2\", \"-g\", \"daemon off;\"]"
}

# build_nonewprivs REF: runs a set-user-ID root program that prints its
# effective user ID (images/nonewprivs).
build_nonewprivs() {
	local dir
	dir=$(derived_context "$1")
	mkdir -p "$dir/rootfs/usr/local/bin"
	run_logged "$BUILD_LOG" gcc -static -O2 -s -Wall -Wextra \
		-o "$dir/rootfs/usr/local/bin/effective-uid" "$IMAGES_DIR/nonewprivs/effective-uid.c"
	# The build context loses the set-user-ID bit; set it in the image.
	build_derived "$1" "$dir" 'RUN chmod 4755 /usr/local/bin/effective-uid' \
		'CMD ["/usr/local/bin/effective-uid"]'
}

# write_etc DIR PASSWD_LINES GROUP_LINES: the base image's /etc/passwd and
# /etc/group plus the given entries.
write_etc() {
	mkdir -p "$1/rootfs/etc"
	{ cat "$BASE_ROOTFS/etc/passwd" && printf '%s\n' "$2"; } >"$1/rootfs/etc/passwd"
	{ cat "$BASE_ROOTFS/etc/group" && printf '%s\n' "$3"; } >"$1/rootfs/etc/group"
}

# build_user REF USER: an image whose default user is USER. All of these images
# know the users that any of them names (www-data is in the base already).
build_user() {
	local dir
	dir=$(derived_context "$1")
	write_etc "$dir" \
		$'user-1002:x:1002:1002::/home:/bin/sh\nuser-1003:x:1003:1003::/home:/bin/sh' \
		$'user-1002:x:1002:\nuser-1003:x:1003:'
	build_derived "$1" "$dir" "USER $2"
}

# build_predefined_group REF UID: user UID belongs to a group that only the
# image's /etc/group knows about, for supplemental-groups tests.
build_predefined_group() {
	local dir
	dir=$(derived_context "$1")
	write_etc "$dir" \
		"user-defined-in-image:x:$2:$2::/home/user-defined-in-image:/bin/sh" \
		"user-defined-in-image:x:$2:"$'\n'"group-defined-in-image:x:50000:user-defined-in-image"
	build_derived "$1" "$dir" "USER $2"
}

# build_multilayer REF COUNT: busybox plus COUNT layers of 4 MiB of pseudo-random
# data each, for pull benchmarks. The data is seeded, so every build makes the
# same layers, and incompressible, so the transfer is real.
build_multilayer() {
	local dir i lines=()
	dir=$(derived_context "$1")
	run_logged "$BUILD_LOG" python3 -c '
import random, sys
directory, count = sys.argv[1], int(sys.argv[2])
for i in range(1, count + 1):
    with open(f"{directory}/layer{i}.bin", "wb") as out:
        out.write(random.Random(f"pycrid-multilayer-{i}").randbytes(4 << 20))
' "$dir" "$2"
	for ((i = 1; i <= $2; i++)); do
		lines+=("COPY layer$i.bin /data/layer$i.bin")
	done
	build_derived "$1" "$dir" "${lines[@]}"
}

# build_tag REF SOURCE: the image of SOURCE under one more name.
build_tag() {
	run_logged "$BUILD_LOG" "$DOCKER" tag "$REGISTRY/$2" "$REGISTRY/$1"
}

# push_image REF: push the image and print the digest of the manifest pushed.
push_image() {
	local output
	output=$("$DOCKER" push "$REGISTRY/$1" 2>&1) || {
		echo "$output" >>"$BUILD_LOG"
		die "failed: docker push $REGISTRY/$1" "$BUILD_LOG"
	}
	echo "$output" >>"$BUILD_LOG"
	# The last line says "TAG: digest: sha256:... size: N".
	awk '$2 == "digest:" { digest = $3 } END { if (digest) print digest; else exit 1 }' \
		<<<"$output" || die "docker push $REGISTRY/$1 named no digest" "$BUILD_LOG"
}

build_and_push_images() {
	local ref kind arg digest
	BUILD_LOG=$LOG_DIR/build.log
	: >"$BUILD_LOG"
	WORK_DIR=$(mktemp -d)
	trap 'rm -rf "$WORK_DIR"' EXIT
	echo "sources $(image_sources_hash)" >"$PUSHED.tmp"
	while read -r ref kind arg; do
		[[ -n $ref ]] || continue
		"build_$kind" "$ref" "$arg"
	done <<<"$IMAGE_TABLE"
	for ref in $(image_refs); do
		digest=$(push_image "$ref")
		echo "$ref $digest" >>"$PUSHED.tmp"
	done
	# dockerd keeps none of these names: tests pull the images through registry
	# mirrors under their upstream names and must see only the names they asked for.
	for ref in $(image_refs); do
		run_logged "$BUILD_LOG" "$DOCKER" rmi "$REGISTRY/$ref"
	done
}

# Build and push the images unless the registry already serves what a build from
# the current sources pushed: any image missing, replaced or built from other
# sources means a new build.
ensure_images() {
	images_current && return 0
	# images.stamp: what older versions of this script trusted instead.
	rm -f "$PUSHED" "$STATE_DIR/images.stamp"
	build_and_push_images
	mv "$PUSHED.tmp" "$PUSHED"
	images_current || die "the registry does not serve the images just pushed" "$BUILD_LOG"
}

# The node image the node-container tests boot: built once, then found by its tag.
ensure_node_image() {
	local log=$LOG_DIR/nodeimage.log
	bash "$REPO_DIR/scripts/nodeimage.sh" build >"$log" 2>&1 ||
		die "cannot build the node image (scripts/nodeimage.sh)" "$log"
	bash "$REPO_DIR/scripts/nodeimage.sh" prune >>"$log" 2>&1 || true
}

# ---------------------------------------------------------------- commands

cmd_up() {
	[[ $(id -u) -eq 0 ]] || die "must run as root"
	mkdir -p "$STATE_DIR/registry" "$RUN_DIR" "$LOG_DIR"
	install_packages
	start_dockerd
	start_registry
	ensure_images
	ensure_node_image
	echo "testenv: up (dockerd, registry on $REGISTRY, $(image_refs | wc -l) image references)"
}

cmd_down() {
	stop_daemon registry docker-registry
	stop_daemon dockerd dockerd
	docker_answers && echo "testenv: a dockerd not started by testenv is still running"
	registry_answers && echo "testenv: a registry not started by testenv is still on $REGISTRY"
	return 0
}

# describe NAME CHECK: one status line for a daemon.
describe() {
	local name=$1 check=$2 pid owner="not started by testenv"
	pid=$(cat "$RUN_DIR/$name.pid" 2>/dev/null) || pid=
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		owner="pid $pid, started by testenv"
	fi
	if "$check"; then
		printf '%-9s up (%s)\n' "$name:" "$owner"
	else
		printf '%-9s down\n' "$name:"
		return 1
	fi
}

cmd_status() {
	local ok=0
	describe dockerd docker_answers || ok=1
	describe registry registry_answers || ok=1
	if ((ok == 0)) && images_current; then
		echo "images:   up to date ($(image_refs | wc -l) references)"
	elif ((ok == 0)); then
		echo "images:   missing, changed, or built from older sources"
		ok=1
	else
		echo "images:   unknown (the registry is down)"
	fi
	exit "$ok"
}

# Several people may run this script at once: one run at a time, or two of them
# could both start a registry and lose track of which one is running.
take_lock() {
	mkdir -p "$RUN_DIR"
	exec 9>"$RUN_DIR/lock"
	flock -w 600 9 || die "another testenv.sh still runs after 10 minutes"
}

main() {
	case ${1:-} in
	up | down) take_lock ;;
	esac
	case ${1:-} in
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	*)
		echo "usage: $0 up|down|status" >&2
		exit 2
		;;
	esac
}

main "$@"

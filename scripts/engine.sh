#!/usr/bin/env bash
# A throwaway Docker engine for tests: its own dockerd with data, exec root, pidfile and
# API socket under DIR, in network and mount namespaces of its own (with its own
# /run/docker/plugins), so neither its networks nor the plugins it discovers (legacy mode)
# touch the machine's main engine.
#
#   scripts/engine.sh start DIR [IMAGE...]   start it, load the images from the main engine
#   scripts/engine.sh exec DIR CMD [ARG...]  run CMD in the engine's mount namespace
#   scripts/engine.sh restart DIR            stop dockerd and start it again over the same state
#   scripts/engine.sh stop DIR               stop it and remove DIR
#
# The engine's API is unix://DIR/docker.sock. It has no bridge network: containers run
# with --network none. DIR must be a short path (containerd's sockets live under it).
source "$(dirname "$0")/lib.sh"

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|exec|restart|stop DIR ..."
shift 2

pid_of() { cat "$dir/dockerd.pid" 2>/dev/null; }
api() { docker -H "unix://$dir/docker.sock" "$@"; }

start_dockerd() {
	# Its own network namespace (a dockerd with --bridge=none deletes docker0 in the namespace
	# it runs in) and mount namespace (the tmpfs hides the main engine's plugin sockets).
	unshare --net --mount --propagation private -- sh -c '
		ip link set lo up
		mkdir -p /run/docker/plugins && mount -t tmpfs -o mode=0700 tmpfs /run/docker/plugins
		exec dockerd --config-file "$1/daemon.json" --data-root "$1/data" --exec-root "$1/exec" \
			--pidfile "$1/dockerd.pid" -H "unix://$1/docker.sock" \
			--bridge=none --iptables=false --ip-masq=false' sh "$dir" >>"$dir/dockerd.log" 2>&1 &
	for _ in $(seq 60); do
		api info >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	die "engine in $dir did not start; see $dir/dockerd.log"
}

stop_dockerd() {
	local pid
	pid=$(pid_of) && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid"
	for _ in $(seq 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
}

case "$cmd" in
start)
	ensure_docker
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	echo '{"storage-driver": "vfs"}' >"$dir/daemon.json"
	start_dockerd
	for image in "$@"; do
		docker save "$image" | api load -q >/dev/null
	done
	;;
exec)
	pid=$(pid_of) || die "no engine running in $dir"
	exec nsenter --mount="/proc/$pid/ns/mnt" -- "$@"
	;;
restart)
	stop_dockerd
	start_dockerd
	;;
stop)
	api ps -aq 2>/dev/null | xargs -r docker -H "unix://$dir/docker.sock" rm -f >/dev/null 2>&1 || true
	stop_dockerd
	rm -rf "$dir"
	;;
*)
	die "unknown command $cmd: use start, exec, restart or stop"
	;;
esac

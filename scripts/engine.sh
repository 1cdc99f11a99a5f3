#!/usr/bin/env bash
# A throwaway Docker engine for tests: its own dockerd with data, exec root, pidfile and
# API socket under DIR, in network and mount namespaces of its own (with its own
# /run/docker/plugins), so neither its networks nor the plugins it discovers (legacy mode)
# touch the machine's main engine.
#
#   scripts/engine.sh start DIR [IMAGE...]   start it, load the images from the main engine
#   scripts/engine.sh exec DIR CMD [ARG...]  run CMD in the engine's mount namespace
#   scripts/engine.sh stop DIR               stop it and remove DIR
#
# The engine's API is unix://DIR/docker.sock. It has no bridge network: containers run
# with --network none. DIR must be a short path (containerd's sockets live under it).
source "$(dirname "$0")/lib.sh"

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|exec|stop DIR ..."
shift 2

pid_of() { cat "$dir/dockerd.pid" 2>/dev/null; }

case "$cmd" in
start)
	ensure_docker
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	echo '{"storage-driver": "vfs"}' >"$dir/daemon.json"
	# Its own network namespace (a dockerd with --bridge=none deletes docker0 in the namespace
	# it runs in) and mount namespace (the tmpfs hides the main engine's plugin sockets).
	unshare --net --mount --propagation private -- sh -c '
		ip link set lo up
		mkdir -p /run/docker/plugins && mount -t tmpfs -o mode=0700 tmpfs /run/docker/plugins
		exec dockerd --config-file "$1/daemon.json" --data-root "$1/data" --exec-root "$1/exec" \
			--pidfile "$1/dockerd.pid" -H "unix://$1/docker.sock" \
			--bridge=none --iptables=false --ip-masq=false' sh "$dir" >"$dir/dockerd.log" 2>&1 &
	for _ in $(seq 60); do
		docker -H "unix://$dir/docker.sock" info >/dev/null 2>&1 && break
		sleep 0.5
	done
	docker -H "unix://$dir/docker.sock" info >/dev/null 2>&1 || die "engine in $dir did not start; see $dir/dockerd.log"
	for image in "$@"; do
		docker save "$image" | docker -H "unix://$dir/docker.sock" load -q >/dev/null
	done
	;;
exec)
	pid=$(pid_of) || die "no engine running in $dir"
	exec nsenter --mount="/proc/$pid/ns/mnt" -- "$@"
	;;
stop)
	if pid=$(pid_of) && kill -0 "$pid" 2>/dev/null; then
		docker -H "unix://$dir/docker.sock" ps -aq | xargs -r docker -H "unix://$dir/docker.sock" rm -f >/dev/null 2>&1 || true
		kill -TERM "$pid"
		for _ in $(seq 40); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
	;;
*)
	die "unknown command $cmd: use start, exec or stop"
	;;
esac

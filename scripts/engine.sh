#!/usr/bin/env bash
# A throwaway Docker engine for tests: its own dockerd with data, exec root, pidfile and
# API socket under DIR, in network and mount namespaces of its own (with its own
# /run/docker/plugins), so neither its networks nor the plugins it discovers (legacy mode)
# touch the machine's main engine.
#
#   scripts/engine.sh start DIR [--addr N] [IMAGE...]
#                                         start it, load the images from the main engine
#   scripts/engine.sh exec DIR CMD [ARG...]  run CMD in the engine's namespaces
#   scripts/engine.sh restart DIR         stop dockerd and start it again over the same state
#   scripts/engine.sh crash DIR           kill every process of the engine's network at once
#                                         (--addr engines): dockerd, containerd, plugins
#   scripts/engine.sh cut DIR | heal DIR  drop all traffic to and from the engine's address,
#                                         and let it through again (--addr engines)
#   scripts/engine.sh drop DIR CHAIN MATCH...
#                                         drop the engine's packets that match (iptables
#                                         CHAIN and match, in its namespace) until undrop
#   scripts/engine.sh undrop DIR          remove every rule drop made
#   scripts/engine.sh shape DIR [QDISC...]
#                                         shape the engine's link with a tc qdisc (tbf: a
#                                         slow link); without QDISC, remove the shaping
#   scripts/engine.sh stop DIR            stop it, remove DIR and its network
#
# The engine's API is unix://DIR/docker.sock. DIR must be a short path (containerd's
# sockets live under it).
#
# Without --addr the engine has no network at all (containers run with --network none) and
# 'exec' enters only its mount namespace, so a legacy daemon run there shares the host's
# loopback. With --addr N (1-250) it is a node of a test network: the address 10.213.0.N on
# the bridge drayage-br0 (the host is 10.213.0.1, so servers the host runs for the test
# listen there), a docker0 of its own (--bip 172.31.N.1/24) and iptables of its own, which
# is what Swarm and managed plugins (host network = the engine's namespace) need.
source "$(dirname "$0")/lib.sh"

bridge=drayage-br0
subnet=10.213.0

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|exec|restart|crash|cut|heal|drop|undrop|shape|stop DIR ..."
shift 2

pid_of() { cat "$dir/dockerd.pid" 2>/dev/null; }
api() { docker -H "unix://$dir/docker.sock" "$@"; }
addr_of() { cat "$dir/addr" 2>/dev/null; }
netns_of() { echo "drayage-$(addr_of)"; }

# net_up makes the bridge (once) and a namespace for node N joined to it by a veth pair.
net_up() {
	local n=$1 ns=drayage-$1
	[ -e "/run/netns/$ns" ] && die "address $subnet.$n is taken (namespace $ns exists): pick another --addr"
	if ! ip link show "$bridge" >/dev/null 2>&1; then
		ip link add "$bridge" type bridge
		ip addr add "$subnet.1/24" dev "$bridge"
		ip link set "$bridge" up
	fi
	# With br_netfilter loaded, bridged frames go through the host's FORWARD chain, where
	# the main engine drops what it doesn't know.
	if iptables -L DOCKER-USER -n >/dev/null 2>&1; then
		iptables -C DOCKER-USER -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
			iptables -I DOCKER-USER -i "$bridge" -o "$bridge" -j ACCEPT
	fi
	ip netns add "$ns"
	ip link add "dr-h$n" type veth peer name eth0 netns "$ns"
	ip link set "dr-h$n" master "$bridge" up
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$subnet.$n/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$subnet.1"
	echo "$n" >"$dir/addr"
}

# net_down removes node's namespace (its veth goes with it) and, with the last node, the
# bridge and its rule.
net_down() {
	local n
	n=$(addr_of) || return 0
	ip netns del "drayage-$n" 2>/dev/null || true
	ip link del "dr-h$n" 2>/dev/null || true
	if ip link show "$bridge" >/dev/null 2>&1 && [ -z "$(ls "/sys/class/net/$bridge/brif" 2>/dev/null)" ]; then
		ip link del "$bridge"
		iptables -D DOCKER-USER -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null || true
	fi
}

start_dockerd() {
	# A mount namespace of its own: the tmpfs hides the main engine's plugin sockets, and
	# the engine's mounts stay out of the host's table. Without --addr, a network namespace
	# of its own too (a dockerd with --bridge=none deletes docker0 in the namespace it runs in).
	local enter=(unshare --net) netargs=(--bridge=none --iptables=false --ip-masq=false) n
	if n=$(addr_of); then
		enter=(nsenter "--net=/run/netns/$(netns_of)")
		netargs=(--bip "172.31.$n.1/24")
	fi
	"${enter[@]}" unshare --mount --propagation private -- sh -c '
		ip link set lo up
		mkdir -p /run/docker/plugins && mount -t tmpfs -o mode=0700 tmpfs /run/docker/plugins
		dir=$1; shift
		exec dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
			--pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" "$@"' sh "$dir" "${netargs[@]}" >>"$dir/dockerd.log" 2>&1 &
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

# traffic inserts (-I) or deletes (-D) the rules that drop the node's traffic on eth0.
traffic() {
	local ns
	ns=$(netns_of) && [ -e "/run/netns/$ns" ] || die "engine in $dir has no network of its own (start it with --addr)"
	for rule in "INPUT -i eth0" "OUTPUT -o eth0"; do
		# shellcheck disable=SC2086
		if [ "$1" = -I ]; then
			nsenter "--net=/run/netns/$ns" iptables -C $rule -j DROP 2>/dev/null ||
				nsenter "--net=/run/netns/$ns" iptables -I $rule -j DROP
		else
			while nsenter "--net=/run/netns/$ns" iptables -D $rule -j DROP 2>/dev/null; do :; done
		fi
	done
}

# in_ns runs a command in the engine's network namespace (--addr engines).
in_ns() {
	local ns
	ns=$(netns_of) && [ -e "/run/netns/$ns" ] || die "engine in $dir has no network of its own (start it with --addr)"
	nsenter "--net=/run/netns/$ns" "$@"
}

case "$cmd" in
start)
	ensure_docker
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "${1:-}" = --addr ]; then
		[[ "${2:-}" =~ ^[0-9]+$ ]] && [ "$2" -ge 2 ] && [ "$2" -le 250 ] || die "--addr takes a number from 2 to 250, not '${2:-}'"
		net_up "$2"
		shift 2
	fi
	# Registries the host serves on the test bridge (docker-registry, for plugin installs)
	# speak plain HTTP.
	echo '{"storage-driver": "vfs", "insecure-registries": ["'"$subnet"'.0/24"]}' >"$dir/daemon.json"
	start_dockerd
	for image in "$@"; do
		docker save "$image" | api load -q >/dev/null
	done
	;;
exec)
	pid=$(pid_of) || die "no engine running in $dir"
	ns=(--mount="/proc/$pid/ns/mnt")
	addr_of >/dev/null && ns+=(--net="/proc/$pid/ns/net")
	exec nsenter "${ns[@]}" -- "$@"
	;;
restart)
	stop_dockerd
	start_dockerd
	;;
crash)
	ns=$(netns_of) && [ -e "/run/netns/$ns" ] || die "engine in $dir has no network of its own (start it with --addr)"
	# As a power cut: the containers too (each in a network of its own, outside the
	# node's; killing the first process of a container ends all of it).
	containers=$(api ps -q 2>/dev/null | xargs -r docker -H "unix://$dir/docker.sock" inspect -f '{{.State.Pid}}' 2>/dev/null || true)
	# shellcheck disable=SC2046,SC2086
	kill -KILL $(ip netns pids "$ns") $containers 2>/dev/null || true
	;;
cut)
	traffic -I
	;;
heal)
	traffic -D
	;;
drop)
	[ $# -ge 1 ] || die "usage: $0 drop DIR CHAIN [MATCH...]"
	in_ns iptables -I "$@" -m comment --comment drayage-drop -j DROP
	;;
undrop)
	in_ns iptables -S | grep -- '--comment drayage-drop' | sed 's/^-A /-D /' | while read -r rule; do
		# shellcheck disable=SC2086
		in_ns iptables $rule
	done
	;;
shape)
	if [ $# -gt 0 ]; then
		in_ns tc qdisc replace dev eth0 root "$@"
	else
		in_ns tc qdisc del dev eth0 root 2>/dev/null || true
	fi
	;;
stop)
	api ps -aq 2>/dev/null | xargs -r docker -H "unix://$dir/docker.sock" rm -f >/dev/null 2>&1 || true
	api swarm leave --force >/dev/null 2>&1 || true
	stop_dockerd
	net_down
	rm -rf "$dir"
	;;
*)
	die "unknown command $cmd: use start, exec, restart, crash, cut, heal, drop, undrop, shape or stop"
	;;
esac

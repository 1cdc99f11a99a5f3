#!/usr/bin/env bash
# make demo: a volume written on one node appears in a container started on another.
# It starts three Docker engines on this machine (throwaway dockerd's, each in network and
# mount namespaces of its own, see scripts/engine.sh) and a drayage node for each, with
# certificates from 'drayage tls init'; the nodes form the embedded store's cluster by
# themselves. It writes a volume on node-a, starts a container on node-b, shows what moved
# and how long it took, stops node-a and shows the other two carry on; then it removes
# everything it made.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || die "the demo starts Docker engines: run it as root (sudo make demo)"
ensure_docker
apt_install iproute2 util-linux
image=drayage-test/busybox:latest
scripts/test-image.sh "$image"
make --no-print-directory build >/dev/null

demo=$PWD/build/demo
bin=$PWD/build/drayage
rm -rf "$demo"
mkdir -p "$demo"
engine_a=$(mktemp -d /tmp/drayage-demo-a.XXXX)
engine_b=$(mktemp -d /tmp/drayage-demo-b.XXXX)
engine_c=$(mktemp -d /tmp/drayage-demo-c.XXXX)
daemons=()
cleanup() {
	for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	scripts/engine.sh stop "$engine_a" >/dev/null 2>&1 || true
	scripts/engine.sh stop "$engine_b" >/dev/null 2>&1 || true
	scripts/engine.sh stop "$engine_c" >/dev/null 2>&1 || true
	rm -rf "$demo"
}
trap cleanup EXIT
step() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "${*@Q}" | sed "s/'\([^' ]*\)'/\1/g"; "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

step "1. Three Docker engines on this machine, and a certificate for each node"
scripts/engine.sh start "$engine_a" "$image"
scripts/engine.sh start "$engine_b" "$image"
scripts/engine.sh start "$engine_c" "$image"
show "$bin" tls init --dir "$demo/pki" --nodes node-a,node-b,node-c --ip node-a=127.0.0.1,node-b=127.0.0.1,node-c=127.0.0.1

step "2. A drayage node for each engine: they form the embedded store's cluster by themselves (node-b and node-c join node-a)"
node() { # name engine root port-base args...
	local name=$1 eng=$2 root=$3 p=$4
	shift 4
	scripts/engine.sh exec "$eng" "$bin" daemon --name "$name" --root "$root" --tls-dir "$demo/pki/$name" \
		--advertise 127.0.0.1 --cluster demo --embedded-addr "127.0.0.1:$((p + 3))" \
		--gossip-port "$p" --control-port "$((p + 1))" --data-port "$((p + 2))" "$@" >"$root.log" 2>&1 &
	daemons+=($!)
}
node node-a "$engine_a" "$demo/node-a" 27790
node node-b "$engine_b" "$demo/node-b" 27890 --join 127.0.0.1:27790
node node-c "$engine_c" "$demo/node-c" 27990 --join 127.0.0.1:27790
for _ in $(seq 120); do
	[ "$("$bin" --root "$demo/node-b" store ls 2>/dev/null | grep -c ' voter .* yes$')" = 3 ] && break
	sleep 0.5
done
show "$bin" --root "$demo/node-b" node ls
show "$bin" --root "$demo/node-b" store ls
A="docker -H unix://$engine_a/docker.sock"
B="docker -H unix://$engine_b/docker.sock"
C="docker -H unix://$engine_c/docker.sock"

step "3. On node-a: create a volume and write to it"
show $A volume create --driver drayage demo-data
show $A run --rm --network none -v demo-data:/data "$image" sh -c \
	'echo "hello from node-a" > /data/greeting && head -c 64m /dev/urandom > /data/blob && sha256sum /data/blob > /data/blob.sha256 && ls -l /data'

step "4. On node-b: start a container with the same volume"
t0=$(date +%s%N)
show $B run --rm --network none -v demo-data:/data "$image" sh -c 'cat /data/greeting && sha256sum -c /data/blob.sha256'
took=$(ms "$t0")

step "5. Where the volume lives now"
show "$bin" --root "$demo/node-b" volume inspect demo-data
grep -h "volume moved here" "$demo/node-b.log" | sed 's/^/  node-b log: /'

printf '\nThe container on node-b started %d ms after it was asked for, with the volume (64 MiB)\npulled from node-a over mutual TLS, verified and committed first.\n' "$took"

step "6. Stop node-a (the first store member): the other two carry on"
kill "${daemons[0]}"
wait "${daemons[0]}" 2>/dev/null || true
t0=$(date +%s%N)
show $C volume create --driver drayage after-node-a
show $C run --rm --network none -v demo-data:/data "$image" cat /data/greeting
printf '\nWith node-a gone, node-c created a volume and moved demo-data from node-b %d ms after it was asked.\n' "$(ms "$t0")"
show "$bin" --root "$demo/node-c" store ls
echo "Cleaning up."

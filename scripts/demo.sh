#!/usr/bin/env bash
# make demo: builds and installs the managed plugin under its own name and state dir,
# writes a volume in one container, reads it in another, shows what drayage reports, and
# removes everything it made.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || die "the demo installs a Docker plugin: run it as root (sudo make demo)"
ensure_docker
export PLUGIN=drayage-demo TAG=dev
ref="$PLUGIN:$TAG"
image=drayage-test/busybox:latest
state="$PWD/build/demo/state"
vol=demo-data

cleanup() {
	docker rm -f drayage-demo-reader >/dev/null 2>&1 || true
	docker volume rm "$vol" >/dev/null 2>&1 || true
	docker plugin disable -f "$ref" >/dev/null 2>&1 || true
	docker plugin rm -f "$ref" >/dev/null 2>&1 || true
	rm -rf build/demo
}
trap cleanup EXIT
step() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "${*@Q}" | sed "s/'\([^' ]*\)'/\1/g"; "$@"; }

scripts/test-image.sh "$image"
step "1. Build and install the managed plugin as $ref"
scripts/build-plugin.sh
mkdir -p "$state" build/demo/tls
show docker plugin set "$ref" state.source="$state" tls.source="$PWD/build/demo/tls" DRAYAGE_NAME=demo-node
show docker plugin enable "$ref"

step "2. Create a volume and write to it from one container"
show docker volume create --driver "$ref" -o uid=1000 -o mode=0750 "$vol"
start=$(date +%s%N)
show docker run --rm -v "$vol:/vol" "$image" sh -c 'date > /vol/written-at && echo "hello from the first container" > /vol/greeting'

step "3. Read it from another container"
show docker run --rm -v "$vol:/vol" "$image" sh -c 'cat /vol/greeting; ls -ln /vol'
end=$(date +%s%N)

step "4. What Docker and drayage report"
show docker volume inspect --format '{{.Name}}: driver {{.Driver}}, scope {{.Scope}}, status {{json .Status}}' "$vol"
show build/drayage --root "$state" volume inspect "$vol"

step "5. In use: a running container holds it, removal is refused"
show docker run -d --name drayage-demo-reader -v "$vol:/vol" "$image" sleep 600 >/dev/null
show build/drayage --root "$state" volume ls
show docker volume rm "$vol" || true
docker rm -f drayage-demo-reader >/dev/null

printf '\nWrote and read back volume %s through drayage in %d ms. Cleaning up.\n' "$vol" $(((end - start) / 1000000))

#!/usr/bin/env bash
# make release REGISTRY=HOST[:PORT]/REPO VERSION=X: builds the managed plugin for VERSION
# (the static binary stamped with it, the rootfs, config.json), creates it as
# REGISTRY/drayage:VERSION and pushes it with docker plugin push. Users then install it
# with docker plugin install --alias drayage REGISTRY/drayage:VERSION (README). The build
# is reproducible: one commit and one VERSION give the same rootfs, byte for byte, so the
# same layer digest, which the last line prints.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

[ -n "${REGISTRY:-}" ] || die "give the registry and repository: make release REGISTRY=HOST[:PORT]/REPO VERSION=X"
[ -n "${VERSION:-}" ] || die "give the version to release: make release REGISTRY=$REGISTRY VERSION=X"
ref="$REGISTRY/drayage:$VERSION"
ensure_docker
PLUGIN="$REGISTRY/drayage" TAG="$VERSION" VERSION="$VERSION" PLUGIN_BUILD="build/release/$VERSION" scripts/build-plugin.sh
log "pushing $ref"
docker plugin push "$ref"
rootfs=$(docker plugin inspect -f '{{range .Config.Rootfs.DiffIds}}{{.}}{{end}}' "$ref")
log "released $ref (rootfs $rootfs)"
echo "$rootfs"

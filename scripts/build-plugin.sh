#!/usr/bin/env bash
# Builds the managed plugin into build/plugin/{config.json,rootfs/} (or PLUGIN_BUILD) and
# creates it in the local engine (DOCKER_HOST) as ${PLUGIN:-drayage}:${TAG:-dev},
# replacing an old plugin of that name.
# The plugin is left disabled: set it up with docker plugin set, then docker plugin enable.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

ref="${PLUGIN:-drayage}:${TAG:-dev}"
out=${PLUGIN_BUILD:-build/plugin} # make release builds elsewhere, leaving build/ as it was
ensure_docker

log "building the static binary"
bin=build/drayage # the CLI beside the plugin; a release's binary stays in its own dir
[ -z "${PLUGIN_BUILD:-}" ] || bin="$out.bin"
make --no-print-directory build ${VERSION:+VERSION=$VERSION} BIN="$bin" >/dev/null
rm -rf "$out"
mkdir -p "$out/rootfs"/{run/docker/plugins,mnt/drayage,var/lib/drayage,etc/drayage,tmp,proc,sys,dev}
cp "$bin" "$out/rootfs/drayage"
# The system's CAs, for volumes filled from https:// sources (-o from): Debian's bundle.
[ -f /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates
mkdir -p "$out/rootfs/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$out/rootfs/etc/ssl/certs/ca-certificates.crt"
cp config.json "$out/config.json"
touch "$out/rootfs/etc/hosts" "$out/rootfs/etc/resolv.conf" "$out/rootfs/etc/hostname"
# Docker 20.10 refuses two plugins from byte-identical rootfs content; stamp the name in.
echo "$ref" >"$out/rootfs/etc/drayage-plugin"

# Reproducible: the same commit gives the same rootfs, so the same layer digest. Every
# entry gets the commit's time and root's ownership (docker plugin create tars the rootfs
# as it is on disk).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
chown -R 0:0 "$out"
chmod -R u=rwX,go=rX "$out"
find "$out" -exec touch -h -d "@$epoch" {} +

# The engine bind-mounts these host dirs into the plugin; they must exist.
mkdir -p /var/lib/drayage /etc/drayage
chmod 700 /var/lib/drayage /etc/drayage

if docker plugin inspect "$ref" >/dev/null 2>&1; then
	log "removing the old $ref (volume data under the state dir is kept)"
	docker plugin disable -f "$ref" >/dev/null 2>&1 || true
	docker plugin rm -f "$ref" >/dev/null
fi
docker plugin create "$ref" "$out" >/dev/null
log "created plugin $ref (disabled); next: docker plugin set $ref ...; docker plugin enable $ref"

#!/usr/bin/env bash
# Builds the busybox image the tests and the demo run containers from. There is no
# registry to pull from, so it is made locally: a rootfs holding Debian's busybox-static
# and its applet links, imported with docker import.
# Usage: scripts/test-image.sh [IMAGE]   (default drayage-test/busybox:latest)
source "$(dirname "$0")/lib.sh"

image=${1:-${TEST_IMAGE:-drayage-test/busybox:latest}}
ensure_docker
if docker image inspect "$image" >/dev/null 2>&1; then
	exit 0
fi
apt_install busybox-static
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,data,etc,tmp,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$image" >/dev/null
log "built $image"

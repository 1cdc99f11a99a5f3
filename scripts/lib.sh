# Shared helpers for scripts/; source it.
set -euo pipefail

# log prints a progress line to stderr.
log() { printf '==> %s\n' "$*" >&2; }

# die prints an error and exits.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_install installs Debian packages that are missing, updating the lists once.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "need root to install ${missing[*]} (run with sudo)"
	log "installing ${missing[*]}"
	if [ -z "${DRAYAGE_APT_UPDATED:-}" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		export DRAYAGE_APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_docker makes sure a Docker engine answers, starting dockerd if none does.
ensure_docker() {
	command -v docker >/dev/null || apt_install docker.io
	docker info >/dev/null 2>&1 && return 0
	log "no Docker engine answers; starting dockerd"
	command -v dockerd >/dev/null || apt_install docker.io
	mkdir -p /var/log
	nohup dockerd >/var/log/drayage-dockerd.log 2>&1 &
	for _ in $(seq 60); do
		docker info >/dev/null 2>&1 && return 0
		sleep 1
	done
	die "dockerd did not start; see /var/log/drayage-dockerd.log"
}

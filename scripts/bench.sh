#!/usr/bin/env bash
# make bench: moves four datasets with drayage's transfer engine (sender and receiver as
# separate processes on loopback, mutual TLS 1.3) and, in the same run, with rsync over
# stunnel with mutual TLS (the stack Red Hat MTC uses for direct volume migration), and
# local copies as floors: tar | tar, and cp -a in 8 parallel processes (no network,
# no encryption, no hashing, no fsync: what reading and creating the files costs here),
# and that cp -a followed by a sync, timed together: the durable floor, since drayage's
# copy is on the disk when it answers and the others' are only in the page cache. Prints seconds, MB/s, peak RSS and drayage's speed as a
# ratio to rsync's. Every run starts from a cold page cache, into a destination of its
# own, and nothing is deleted while runs are timed: on ext4 without a journal, creating
# files within a minute of deleting many skips the freed inodes one by one (50,000 small
# files take 15 times longer to create), which would time the order of the runs, not
# the tools.
#   large: 4 files x 256 MiB random; small: 50,000 files x 4 KiB in 500 dirs;
#   delta: small already at the destination, 1% of its files changed (for drayage, a copy
#          drayage made, with its files' hashes, as a volume's older copy always is);
#   inplace: large already at the destination, 1 MiB of it rewritten in place (16 writes
#          of 64 KiB spread over the files, as a database or a disk image changes);
#   sync:  delta as a replica's sync makes it: the sender has a change log that names the
#          1% of files changed, and both ends keep a record of their trees from the last
#          sync, so neither walks its 50,000 files (rsync must).
# Then backups of large and small to S3 against tar | zstd (BENCH_BACKUP=0: not).
# Each tool runs BENCH_RUNS times (default 3), in turns, and the median is printed: this
# machine's speed wanders by half from one minute to the next. BENCH_SETS picks datasets,
# BENCH_STREAMS drayage's streams.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || die "the benchmark drops the page cache and keeps owners: run it as root"
apt_install rsync stunnel4 time
make --no-print-directory build >/dev/null
go build -o build/transferbench ./scripts/bench/transferbench

work=${BENCH_DIR:-$PWD/.bench}  # a dot-dir: the go tool does not walk it
deleted=0
if [ -e "$work" ]; then
	rm -rf "$work"
	deleted=$(date +%s)
fi
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

pki=$work/pki
build/drayage tls init --dir "$pki" --nodes node-a,node-b --ip node-a=127.0.0.1,node-b=127.0.0.1 >/dev/null

log "generating datasets in $work"
build/transferbench gen large "$work/large"
build/transferbench gen small "$work/small"
cp -a "$work/small" "$work/delta"
sets=${BENCH_SETS:-large small delta sync inplace}
[[ " $sets " != *" sync "* ]] || cp -a "$work/small" "$work/sync"
[[ " $sets " != *" inplace "* ]] || cp -a "$work/large" "$work/inplace"
# base_of names the dataset a delta dataset starts from at the destination ("": none).
base_of() { case $1 in delta | sync) echo small ;; inplace) echo large ;; esac; }
# sync's sender keeps a change log (a list of the paths changed), and pulls as a replica.
send_opts() { [ "$1" != sync ] || echo "-changes $work/sync.list"; }
pull_opts() { [ "$1" != sync ] || echo "-live"; }
runs=${BENCH_RUNS:-3}
for ds in $sets; do # each run's starting point, made now
	base=$(base_of "$ds")
	for tool in drayage rsync tar cp cpsync; do
		[[ $tool != cp* ]] || [ -z "$base" ] || continue
		for i in $(seq "$runs"); do
			if [ -n "$base" ]; then cp -a "$work/$base" "$work/run-$tool-$ds-$i"; else mkdir "$work/run-$tool-$ds-$i"; fi
		done
	done
done
# drayage's delta starts from a copy drayage made, as a volume's older copy always is:
# with its files' hashes stored beside it at both ends (an untimed pull of the unchanged
# tree makes them). Then 1% of the files change (delta), or 1 MiB of the large files, in
# place (inplace).
for ds in $sets; do
	[ -n "$(base_of "$ds")" ] || continue
	# shellcheck disable=SC2046
	coproc PREP { exec build/transferbench send -pki "$pki" -dir "$work/$ds" -control 127.0.0.1:27791 -data 127.0.0.1:27792 $(send_opts "$ds"); }
	pids+=("$PREP_PID")
	read -r ready <&"${PREP[0]}"
	[ "$ready" = ready ] || die "sender did not start"
	for i in $(seq "$runs"); do
		# shellcheck disable=SC2046
		build/transferbench pull -pki "$pki" -staging "$work/run-drayage-$ds-$i" -control 127.0.0.1:27791 $(pull_opts "$ds") >/dev/null
	done
	kill -TERM "$PREP_PID"
	wait "$PREP_PID" 2>/dev/null || true
done
build/transferbench touch "$work/delta" 1
if [ -d "$work/sync" ]; then # each run starts from the sender's record of the last sync
	build/transferbench touch "$work/sync" 1 "$work/sync.list"
	cp "$work/sync.tree" "$work/sync.tree.base"
fi
[ ! -d "$work/inplace" ] || build/transferbench poke "$work/inplace" 1
sync
if [ "$deleted" -gt 0 ]; then # let ext4 forget the inodes the last run's files freed
	wait_s=$((deleted + 65 - $(date +%s)))
	[ "$wait_s" -le 0 ] || { log "waiting ${wait_s}s for the last benchmark's deletions to settle"; sleep "$wait_s"; }
fi

cold() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || log "cannot drop the page cache here; runs are warm"
}

size_of() { du -sb --apparent-size "$1" | cut -f1; }

# drayage: a sender process serving SRC, a receiver pulling into staging and installing.
run_drayage() {
	local src=$1 ds=$2 dst=$work/dst-drayage-$2-$3 staging=$work/run-drayage-$2-$3
	mkdir -p "$dst"
	[ ! -e "$src.tree.base" ] || cp "$src.tree.base" "$src.tree"
	# shellcheck disable=SC2046
	coproc SENDER { exec build/transferbench send -pki "$pki" -dir "$src" -control 127.0.0.1:27791 -data 127.0.0.1:27792 $(send_opts "$ds"); }
	pids+=("$SENDER_PID")
	read -r ready <&"${SENDER[0]}"
	[ "$ready" = ready ] || die "sender did not start"
	cold
	local t0 t1 out
	t0=$(date +%s%N)
	# shellcheck disable=SC2046
	out=$(build/transferbench pull -pki "$pki" -staging "$staging" -dest "$dst" -control 127.0.0.1:27791 -streams "${BENCH_STREAMS:-0}" $(pull_opts "$ds"))
	t1=$(date +%s%N)
	kill -TERM "$SENDER_PID"
	local sender_rss
	read -r sender_rss <&"${SENDER[0]}"
	wait "$SENDER_PID" 2>/dev/null || true
	local recv_rss
	recv_rss=$(echo "$out" | sed -n 's/.*"peak_rss_kib":"\{0,1\}\([0-9]*\).*/\1/p')
	echo "$(( (t1 - t0) / 1000000 )) $(( (sender_rss > recv_rss ? sender_rss : recv_rss) ))"
}

# rsync over stunnel, mutual TLS 1.3 with the same certificates.
run_rsync() {
	local src=$1 dst=$work/run-rsync-$2-$3 conf=$work/rsync-conf
	mkdir -p "$conf"
	cat >"$conf/rsyncd.conf" <<CONF
uid = root
gid = root
use chroot = no
[src]
path = $src
read only = yes
CONF
	cat >"$conf/server.conf" <<CONF
foreground = yes
pid =
[rsync]
accept = 127.0.0.1:27873
connect = 127.0.0.1:27874
cert = $pki/node-a/node.pem
key = $pki/node-a/node-key.pem
CAfile = $pki/node-a/ca.pem
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
CONF
	cat >"$conf/client.conf" <<CONF
foreground = yes
pid =
[rsync]
client = yes
accept = 127.0.0.1:27875
connect = 127.0.0.1:27873
cert = $pki/node-b/node.pem
key = $pki/node-b/node-key.pem
CAfile = $pki/node-b/ca.pem
verifyChain = yes
checkHost = node-a
sslVersionMin = TLSv1.3
CONF
	rsync --daemon --no-detach --address 127.0.0.1 --port 27874 --config "$conf/rsyncd.conf" & pids+=($!)
	stunnel "$conf/server.conf" 2>/dev/null & pids+=($!)
	stunnel "$conf/client.conf" 2>/dev/null & pids+=($!)
	sleep 1
	cold
	local t0 t1 rss
	t0=$(date +%s%N)
	rss=$( { /usr/bin/time -f "%M" rsync -aHAXS --numeric-ids "rsync://127.0.0.1:27875/src/" "$dst/" >/dev/null; } 2>&1 | tail -1)
	t1=$(date +%s%N)
	for p in "${pids[@]: -3}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "$(( (t1 - t0) / 1000000 )) $rss"
}

run_tar() {
	local src=$1 dst=$work/run-tar-$2-$3
	cold
	local t0 t1
	t0=$(date +%s%N)
	tar -C "$src" --sparse -cf - . | tar -C "$dst" -xpf -
	t1=$(date +%s%N)
	echo "$(( (t1 - t0) / 1000000 )) -"
}

# cp -a in 8 processes at once, a few top-level entries each (not for delta: cp copies all);
# with "sync", followed by a sync timed with it: the durable floor, the copy on the disk,
# as drayage's is when it answers (the page-cache floors never reach the disk).
run_cp() {
	local src=$1 how=${4:-} dst=$work/run-cp${4:-}-$2-$3
	mkdir -p "$dst"
	cold
	local t0 t1
	t0=$(date +%s%N)
	find "$src" -mindepth 1 -maxdepth 1 -print0 | xargs -0 -P 8 -n 16 cp -a -t "$dst"
	[ "$how" != sync ] || sync
	t1=$(date +%s%N)
	echo "$(( (t1 - t0) / 1000000 )) -"
}

# median "MS RSS"...: the median time of the runs, and the highest peak RSS.
median() {
	local ms rss
	ms=$(printf '%s\n' "$@" | cut -d' ' -f1 | sort -n | sed -n "$(( ($# + 1) / 2 ))p")
	rss=$(printf '%s\n' "$@" | cut -d' ' -f2 | sort -n | tail -1)
	echo "$ms $rss"
}

printf '\n%-7s %-15s %9s %10s %10s %11s\n' dataset tool seconds MB/s "peak RSS" "vs rsync"
floors=()
for ds in $sets; do
	src=$work/$ds
	bytes=$(size_of "$src")
	d=() r=() t=() c=() cs=()
	for i in $(seq "$runs"); do # the tools take turns, so a slow spell of the machine hits each
		d+=("$(run_drayage "$src" "$ds" "$i")")
		r+=("$(run_rsync "$src" "$ds" "$i")")
		t+=("$(run_tar "$src" "$ds" "$i")")
		if [ -z "$(base_of "$ds")" ]; then
			c+=("$(run_cp "$src" "$ds" "$i")")
			cs+=("$(run_cp "$src" "$ds" "$i" sync)")
		fi
	done
	read -r d_ms d_rss <<<"$(median "${d[@]}")"
	read -r r_ms r_rss <<<"$(median "${r[@]}")"
	read -r t_ms _ <<<"$(median "${t[@]}")"
	diff -r "$src" "$work/dst-drayage-$ds-1" >/dev/null || die "drayage's copy of $ds differs from the source"
	row() { # tool ms rss
		local mbs ratio rss=$3
		mbs=$(awk -v b="$bytes" -v ms="$2" 'BEGIN { printf "%.0f", b / 1e6 / (ms / 1000) }')
		ratio=$(awk -v r="$r_ms" -v ms="$2" 'BEGIN { printf "%.2fx", r / ms }')
		[ "$rss" = - ] || rss="$((rss / 1024)) MiB"
		printf '%-7s %-15s %9.2f %10s %10s %11s\n' "$ds" "$1" "$(awk -v ms="$2" 'BEGIN { print ms / 1000 }')" "$mbs" "$rss" "$ratio"
	}
	row drayage "$d_ms" "$d_rss"
	row rsync+stunnel "$r_ms" "$r_rss"
	row "tar|tar" "$t_ms" -
	if [ -z "$(base_of "$ds")" ]; then
		read -r c_ms _ <<<"$(median "${c[@]}")"
		row "cp -a x8" "$c_ms" -
		read -r cs_ms _ <<<"$(median "${cs[@]}")"
		row "cp -a x8+sync" "$cs_ms" -
		floors+=("$(awk -v d="$d_ms" -v f="$cs_ms" -v ds="$ds" 'BEGIN { printf "%s: drayage takes %.2fx the durable floor (%.2f s against %.2f s)", ds, d / f, d / 1000, f / 1000 }')")
	fi
done
echo
echo "Seconds: the median of $runs runs of each tool, taken in turns. MB/s is the dataset's size over that time (delta, inplace: the whole volume's size)."
echo "drayage: ${BENCH_STREAMS:-8} parallel streams, BLAKE3 per file, one syncfs before install; rsync, tar and cp do not fsync."
echo "tar|tar and cp -a x8 copy locally, with no network, encryption or hashing: the floors a transfer can't beat here."
echo "cp -a x8+sync is the durable floor: the same copy followed by a sync, timed together, so that it ends on the disk as drayage's does."
printf '%s\n' "${floors[@]}"

# Backups to a real S3 server (versitygw on loopback, storing on this disk) against
# tar | zstd uploaded with the same S3 client, and restores against the download piped to
# zstd -d | tar -x (scripts/bench/backupbench). BENCH_BACKUP=0 leaves them out.
if [ "${BENCH_BACKUP:-1}" = 1 ]; then
	log "backups to S3"
	apt_install zstd
	scripts/build-tools.sh versitygw
	go build -o build/backupbench ./scripts/bench/backupbench
	build/backupbench -versitygw "$PWD/.tools/bin/versitygw" -work "$work" -runs "$runs" large small
fi

# Replicated volumes on real engines in namespaces (integration/bench_test.go): the start
# of a container on a replica's node after a drain, against a local volume's start; the
# CPU of idle replicated volumes; and the time a Swarm service takes to run again with its
# volume after its node crashed. BENCH_ENGINES=0 leaves them out.
if [ "${BENCH_ENGINES:-1}" = 1 ]; then
	log "replicated volumes on real engines"
	ensure_docker
	apt_install busybox-static iproute2 util-linux iptables etcd-server
	echo
	go test -count=1 -timeout 60m -run '^$' -bench 'StartAfterDrain|IdleReplicatedVolumes|RecoveryAfterNodeCrash' -benchtime 1x -v ./integration/ |
		grep -E '^Benchmark|bench_test.go:[0-9]+:' || die "the engine benchmarks failed (run them with go test -bench ... -v ./integration/ to see why)"
fi

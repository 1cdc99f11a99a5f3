#!/usr/bin/env bash
# make scale: how drayage's costs grow with nodes, volumes and files, measured here and
# printed as one table with each goal beside its figure (scripts/bench/scalebench table).
# Not a test: nothing here fails on a figure, and make test never runs it.
#
#   gossip   SCALE_NODES (1000) nodes on drayage's real gossip package, in one process on
#            memberlist's in-memory network: the time a new node takes to be seen by all,
#            the time a node cut off takes to be declared dead, the steady traffic and CPU
#            of a node; once per gossip profile in SCALE_PROFILES (lan large).
#   volumes  SCALE_VOLUMES (100,000) volume records in each store of SCALE_STORES (etcd
#            consul embedded), SCALE_LOCAL (1,000) of them held by the node measured: the
#            engine's List and Get through the plugin socket, the node's RSS, goroutines,
#            and the store's size (integration/scale_test.go, BenchmarkScaleVolumes).
#   mounts   the cluster store calls one Mount makes, in each case; the latency of
#            SCALE_MOUNTS (1,000) Mounts of an idle local volume; what a remote Mount
#            spends beyond its transfer (BenchmarkScaleMounts).
#   files    volumes of SCALE_FILES (100000 1000000 3000000) files of 48 bytes moved
#            between two transfer processes (the daemon's engine, mutual TLS on loopback):
#            seconds per file and each end's peak RSS. The files live on a scratch ext4
#            image made with inline_data (a file this small lives in its inode): millions
#            fit where 4 KiB blocks each would not.
# SCALE_PARTS picks parts (default: all four).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || die "make scale runs daemons that mount volumes and a scratch file system: run it as root"
parts=${SCALE_PARTS:-gossip volumes mounts files}
work=${SCALE_DIR:-$PWD/.scale}
mkdir -p "$work"
out=$work/figures.jsonl
: >"$out"
make --no-print-directory build >/dev/null
go build -o build/scalebench ./scripts/bench/scalebench
go build -o build/transferbench ./scripts/bench/transferbench

has() { [[ " $parts " == *" $1 "* ]]; }

if has gossip; then
	for profile in ${SCALE_PROFILES:-lan large}; do
		log "gossip: ${SCALE_NODES:-1000} simulated nodes, profile $profile"
		build/scalebench gossip -nodes "${SCALE_NODES:-1000}" -profile "$profile" -window "${SCALE_WINDOW:-3m}" -out "$out"
	done
fi

if has volumes || has mounts; then
	apt_install etcd-server
	scripts/build-tools.sh consul
	benches=()
	has volumes && benches+=(BenchmarkScaleVolumes)
	has mounts && benches+=(BenchmarkScaleMounts)
	log "volumes and mounts on real daemons and stores: ${benches[*]}"
	DRAYAGE_HOST_ONLY=1 SCALE_OUT=$out DRAYAGE_CONSUL=$PWD/.tools/bin/consul \
		go test -count=1 -timeout 90m -run '^$' -bench "^($(
			IFS='|'
			echo "${benches[*]}"
		))\$" -benchtime 1x -v ./integration/ | grep -E '^(Benchmark|---|FAIL)|scale_test.go:[0-9]+:' ||
		die "the scale benchmarks failed (run them with go test -bench BenchmarkScale -v ./integration/ to see why)"
fi

if has files; then
	apt_install e2fsprogs
	img=$work/files.img mnt=$work/files
	mountpoint -q "$mnt" && umount "$mnt"
	rm -f "$img"
	# Room for every set twice (source and copy): 48-byte files live in their 256-byte
	# inodes (inline_data), 1,000 to a directory. Nothing is deleted while runs are timed
	# (bench.sh says why).
	sum=0
	for n in ${SCALE_FILES:-100000 1000000 3000000}; do sum=$((sum + n)); done
	truncate -s $((sum * 2 * 512 + (8 << 30))) "$img"
	mkfs.ext4 -q -F -O inline_data -I 256 -N $((sum * 2 + 200000)) -m 0 "$img"
	mkdir -p "$mnt"
	mount -o loop "$img" "$mnt"
	trap 'umount "$mnt" 2>/dev/null; rm -f "$img"' EXIT
	pki=$work/pki
	rm -rf "$pki"
	build/drayage tls init --dir "$pki" --nodes node-a,node-b --ip node-a=127.0.0.1,node-b=127.0.0.1 >/dev/null
	for n in ${SCALE_FILES:-100000 1000000 3000000}; do
		log "files: $n files of 48 bytes"
		build/transferbench gen "tiny:$n" "$mnt/src-$n"
		sync
		coproc SENDER { exec build/transferbench send -pki "$pki" -dir "$mnt/src-$n" -control 127.0.0.1:27891 -data 127.0.0.1:27892; }
		read -r ready <&"${SENDER[0]}"
		[ "$ready" = ready ] || die "the sender did not start"
		sync
		echo 3 >/proc/sys/vm/drop_caches
		t0=$(date +%s%N)
		res=$(build/transferbench pull -pki "$pki" -staging "$mnt/staging-$n" -dest "$mnt/dst-$n" -control 127.0.0.1:27891 -streams 0)
		t1=$(date +%s%N)
		kill -TERM "$SENDER_PID"
		read -r sender_rss <&"${SENDER[0]}"
		wait "$SENDER_PID" 2>/dev/null || true
		recv_rss=$(echo "$res" | sed -n 's/.*"peak_rss_kib":"\{0,1\}\([0-9]*\).*/\1/p')
		files=$(echo "$res" | sed -n 's/.*"files":\([0-9]*\).*/\1/p')
		[ "$files" -ge "$n" ] || die "the pull of $n files moved $files"
		build/scalebench figure -out "$out" -figure "files.$n.us-per-file" -unit "µs" \
			-value "$(awk -v ns=$((t1 - t0)) -v n="$n" 'BEGIN { print ns / 1000 / n }')" -detail "$n files moved in $(((t1 - t0) / 1000000)) ms"
		build/scalebench figure -out "$out" -figure "files.$n.peak-rss" -unit "MiB" \
			-value "$(((sender_rss > recv_rss ? sender_rss : recv_rss) / 1024))" -detail "sender $((sender_rss / 1024)) MiB, receiver $((recv_rss / 1024)) MiB"
	done
fi

echo
build/scalebench table "$out"

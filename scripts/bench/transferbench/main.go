// Command transferbench runs the transfer engine's two sides as separate processes for
// scripts/bench.sh, and generates its datasets. It uses the same code the daemon runs:
//
//	transferbench gen large|small|tiny:N DIR  make a dataset
//	transferbench touch DIR PERCENT [LIST]    change PERCENT% of the files in DIR (and list them)
//	transferbench send -pki P -dir D -control ADDR -data ADDR [-changes LIST]
//	transferbench pull -pki P -staging S [-dest D] -control ADDR -streams N [-live]
//
// send -changes gives the sender a change log, as a replica's owner has: no file at LIST
// yet is its start, and the paths listed there are what changed since. pull -live pulls
// as a replica's sync does (from the records both ends keep once a first sync made them).
//
// pull without -dest leaves the tree in staging (and its hashes beside it): how the
// delta runs' starting points are made, as drayage's own copies are.
//
// send prints "ready" once it listens and, on SIGTERM, its peak RSS in KiB; pull prints
// what it moved as JSON and its own peak RSS.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/transfer"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: transferbench gen, touch, poke, send or pull"))
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2], os.Args[3])
	case "touch":
		list := ""
		if len(os.Args) > 4 {
			list = os.Args[4]
		}
		err = touch(os.Args[2], os.Args[3], list)
	case "poke":
		err = poke(os.Args[2], os.Args[3])
	case "send":
		err = send(os.Args[2:])
	case "pull":
		err = pull(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "transferbench:", err)
	os.Exit(1)
}

// gen makes "large" (4 files of 256 MiB of random data), "small" (50,000 files of
// 4 KiB in 500 directories) or "tiny:N" (N files of 48 bytes, 1,000 a directory: small
// enough for ext4 to keep inside their inodes, so that millions fit on a scratch file
// system made with inline_data).
func gen(kind, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if n, ok := strings.CutPrefix(kind, "tiny:"); ok {
		return genTiny(n, dir)
	}
	switch kind {
	case "large":
		buf := make([]byte, 4<<20)
		for i := range 4 {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("large-%d.bin", i)))
			if err != nil {
				return err
			}
			for range 64 {
				_, _ = rand.Read(buf)
				if _, err := f.Write(buf); err != nil {
					return err
				}
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	case "small":
		buf := make([]byte, 4096)
		for d := range 500 {
			sub := filepath.Join(dir, fmt.Sprintf("d%03d", d))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
			for f := range 100 {
				_, _ = rand.Read(buf)
				if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", f)), buf, 0o644); err != nil {
					return err
				}
			}
		}
	default:
		return fmt.Errorf("dataset %q: want large or small", kind)
	}
	return nil
}

func genTiny(count, dir string) error {
	var n int
	if _, err := fmt.Sscan(count, &n); err != nil || n <= 0 {
		return fmt.Errorf("tiny:%s: want a file count", count)
	}
	buf := make([]byte, 48)
	for d := 0; d*1000 < n; d++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%05d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		for f := d * 1000; f < min(n, (d+1)*1000); f++ {
			_, _ = rand.Read(buf)
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%07d", f)), buf, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// touch rewrites every (100/percent)th file with new content, and lists the paths it
// changed (relative to dir) in list, if given.
func touch(dir, percent, list string) error {
	var p int
	if _, err := fmt.Sscan(percent, &p); err != nil || p <= 0 {
		return fmt.Errorf("percent %q", percent)
	}
	every, n := 100/p, 0
	buf := make([]byte, 4096)
	var changed []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n++
		if n%every != 0 {
			return nil
		}
		_, _ = rand.Read(buf)
		rel, _ := filepath.Rel(dir, path)
		changed = append(changed, rel)
		return os.WriteFile(path, buf, 0o644)
	})
	if err != nil || list == "" {
		return err
	}
	return os.WriteFile(list, []byte(strings.Join(changed, "\n")+"\n"), 0o644)
}

// listLog is a change log read from a file: no file is position 0, the paths in it are
// what changed from there to position 1.
type listLog struct{ path string }

func (l listLog) Position() (string, uint64) {
	if _, err := os.Stat(l.path); err != nil {
		return "bench", 0
	}
	return "bench", 1
}

func (l listLog) Since(_, log string, seq uint64) ([]string, bool) {
	_, now := l.Position()
	if log != "bench" || seq > now {
		return nil, false
	}
	if seq == now {
		return nil, true
	}
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, false
	}
	return strings.Fields(string(b)), true
}

// poke rewrites mib MiB of the files in dir in place, in writes of 64 KiB spread evenly
// over them: how a database or a disk image changes.
func poke(dir, mib string) error {
	var m int
	if _, err := fmt.Sscan(mib, &m); err != nil || m <= 0 {
		return fmt.Errorf("MiB %q", mib)
	}
	var files []string
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, path)
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return err
	})
	if err != nil || len(files) == 0 {
		return fmt.Errorf("poke %s: %w", dir, err)
	}
	const write = 64 << 10
	writes := m << 20 / write
	buf := make([]byte, write)
	for w := range writes {
		f := files[w%len(files)]
		fi, err := os.Stat(f)
		if err != nil {
			return err
		}
		slots := fi.Size() / write
		off := (int64(w/len(files))*2 + 1) * slots / int64(2*((writes+len(files)-1)/len(files))) * write
		fh, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, _ = rand.Read(buf)
		_, err = fh.WriteAt(buf, off)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func load(pki, node string) (*identity.Identity, error) {
	return identity.Load(filepath.Join(pki, node), node)
}

func send(args []string) error {
	fl := flag.NewFlagSet("send", flag.ExitOnError)
	pki, dir := fl.String("pki", "", ""), fl.String("dir", "", "")
	ctlAddr, dataAddr := fl.String("control", "", ""), fl.String("data", "", "")
	changes := fl.String("changes", "", "")
	_ = fl.Parse(args)
	id, err := load(*pki, "node-a")
	if err != nil {
		return err
	}
	auth := func(context.Context, string, string, uint64) (string, error) { return *dir, nil }
	srv := transfer.NewServer(id, auth, *dataAddr, slog.New(slog.DiscardHandler))
	if *changes != "" {
		srv.Changes = listLog{*changes}
	}
	g := peers.NewServer(id, nil, slog.New(slog.DiscardHandler))
	g.Register(srv.ServiceDesc())
	ctl, err := net.Listen("tcp", *ctlAddr)
	if err != nil {
		return err
	}
	data, err := net.Listen("tcp", *dataAddr)
	if err != nil {
		return err
	}
	go func() { _ = srv.ServeData(data) }()
	go func() { _ = g.Serve(ctl) }()
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Println(peakRSS())
	return nil
}

func pull(args []string) error {
	fl := flag.NewFlagSet("pull", flag.ExitOnError)
	pki, staging, dest := fl.String("pki", "", ""), fl.String("staging", "", ""), fl.String("dest", "", "")
	ctlAddr, streams := fl.String("control", "", ""), fl.Int("streams", 0, "")
	live := fl.Bool("live", false, "")
	_ = fl.Parse(args)
	id, err := load(*pki, "node-b")
	if err != nil {
		return err
	}
	res, err := transfer.Pull(context.Background(), transfer.PullOptions{Identity: id, From: "node-a", Control: *ctlAddr,
		Volume: "bench", Epoch: 1, Staging: *staging, Streams: *streams, Live: *live})
	if err != nil {
		return err
	}
	if *dest != "" {
		if err := transfer.Install(*staging, *dest); err != nil {
			return err
		}
	}
	out, _ := json.Marshal(map[string]any{"files": res.Files, "bytes": res.Bytes, "total": res.Total, "peak_rss_kib": peakRSS()})
	fmt.Println(string(out))
	return nil
}

// peakRSS is this process's peak resident set size in KiB (VmHWM).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "0"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return "0"
}

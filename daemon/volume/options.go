package volume

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drayage/drayage/daemon/seed/source"
)

// Options are the settings a volume is created with (docker volume create -o KEY=VALUE).
type Options struct {
	// UID and GID own the volume's root directory (default 0:0).
	UID, GID int
	// Mode is the permission of the volume's root directory (default 0755).
	Mode os.FileMode
	// AllowPrivileged lets the volume hold setuid and setgid files, file capabilities,
	// trusted.* attributes and device nodes: they travel when it moves, and its mount
	// honours them. Without it (the default) they are stripped (devices refused) when it
	// moves, and it is mounted nosuid,nodev.
	AllowPrivileged bool
	// Replicas is how many copies of the volume the cluster keeps: its owner's and
	// Replicas-1 warm replicas on other nodes (0: the node's DRAYAGE_REPLICAS).
	Replicas int
	// ReplicaNodes, if set, are the nodes the replicas go to, sorted and comma-separated;
	// otherwise the live nodes with the most free space.
	ReplicaNodes string
	// SyncInterval is how soon a change reaches the replicas while the volume is mounted
	// (0: the node's DRAYAGE_SYNC_INTERVAL).
	SyncInterval time.Duration
	// MaxLag is the most a replica may be behind for a Mount to promote it when the
	// volume's owner is down; -1: never promote without --accept-loss (0: the node's
	// DRAYAGE_MAX_LAG).
	MaxLag time.Duration
	// From is where the volume's first content comes from (an archive at an https, http
	// or s3 URL), and SHA256 the archive's expected hash: the volume starts empty and its
	// owner fills it in the background (seed.go).
	From, SHA256 string
}

// The options of replicated volumes (replicate.go).
const (
	optReplicas     = "replicas"
	optReplicaNodes = "replica-nodes"
	optSyncInterval = "sync-interval"
	optMaxLag       = "max-lag"
	// MaxReplicas bounds the replicas option.
	MaxReplicas = 5
	// MinSyncInterval bounds the sync-interval option from below.
	MinSyncInterval = time.Second
)

// The options of a volume filled from an archive (seed.go).
const (
	optFrom   = "from"
	optSHA256 = "sha256"
)

// optAllowPrivileged is the option that sets Options.AllowPrivileged.
const optAllowPrivileged = "allow-privileged"

// AllowsPrivileged reports whether a volume with these canonical options allows
// privileged content.
func AllowsPrivileged(canon map[string]string) bool { return canon[optAllowPrivileged] == "true" }

type optionSpec struct {
	help  string
	apply func(o *Options, value string) error
}

var optionSpecs = map[string]optionSpec{
	"uid": {"numeric owner of the volume's root dir (default 0)", func(o *Options, v string) (err error) {
		o.UID, err = parseID(v)
		return err
	}},
	"gid": {"numeric group of the volume's root dir (default 0)", func(o *Options, v string) (err error) {
		o.GID, err = parseID(v)
		return err
	}},
	"mode": {"octal permissions of the volume's root dir (default 0755)", func(o *Options, v string) error {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("want octal permission bits such as 0755 or 1777")
		}
		o.Mode = os.FileMode(m & 0o777)
		if m&0o4000 != 0 {
			o.Mode |= os.ModeSetuid
		}
		if m&0o2000 != 0 {
			o.Mode |= os.ModeSetgid
		}
		if m&0o1000 != 0 {
			o.Mode |= os.ModeSticky
		}
		return nil
	}},
	optAllowPrivileged: {"true to keep setuid/setgid files, file capabilities, trusted.* attributes and devices (default false: stripped or refused when the volume moves, and the volume is mounted nosuid,nodev)",
		func(o *Options, v string) (err error) {
			o.AllowPrivileged, err = strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			return nil
		}},
	optFrom: {"an archive (.tar, .tar.gz or .tar.zst) to fill the new volume from: https://HOST/PATH, http://HOST/PATH (with sha256) or s3://BUCKET/KEY",
		func(o *Options, v string) error { o.From = v; return nil }},
	optSHA256: {"the SHA-256 (hex, as sha256sum prints it) the archive in from must have",
		func(o *Options, v string) error { o.SHA256 = v; return nil }},
	optReplicas: {fmt.Sprintf("copies of the volume the cluster keeps, on different nodes: 1 to %d (default DRAYAGE_REPLICAS)", MaxReplicas),
		func(o *Options, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxReplicas {
				return fmt.Errorf("want a number from 1 to %d", MaxReplicas)
			}
			o.Replicas = n
			return nil
		}},
	optReplicaNodes: {"comma-separated nodes to keep the replicas on (default: the live nodes with the most free space)",
		func(o *Options, v string) error {
			var nodes []string
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n == "" {
					continue
				}
				if ValidateName(n) != nil {
					return fmt.Errorf("%q is not a node name (letters, digits, '.', '_' and '-')", n)
				}
				nodes = append(nodes, n)
			}
			if len(nodes) == 0 {
				return fmt.Errorf("want node names such as node-b,node-c")
			}
			slices.Sort(nodes)
			o.ReplicaNodes = strings.Join(slices.Compact(nodes), ",")
			return nil
		}},
	optSyncInterval: {"how soon a change reaches the replicas while the volume is mounted, such as 10s or 5m (default DRAYAGE_SYNC_INTERVAL)",
		func(o *Options, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < MinSyncInterval {
				return fmt.Errorf("want a duration of at least %s, such as 10s or 5m", MinSyncInterval)
			}
			o.SyncInterval = d
			return nil
		}},
	optMaxLag: {"how far behind a replica may be for a Mount to promote it when the owner is down, such as 5m (default DRAYAGE_MAX_LAG); 0: never without 'drayage volume promote --accept-loss'",
		func(o *Options, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("want a duration such as 30s or 5m, or 0 to never promote a replica automatically")
			}
			o.MaxLag = d
			if d == 0 {
				o.MaxLag = -1
			}
			return nil
		}},
}

// ValidOptions lists the option names a volume accepts, sorted.
func ValidOptions() []string { return slices.Sorted(maps.Keys(optionSpecs)) }

// OptionsHelp describes each valid option, one per line.
func OptionsHelp() string {
	var b strings.Builder
	for _, k := range ValidOptions() {
		fmt.Fprintf(&b, "  %-16s %s\n", k, optionSpecs[k].help)
	}
	return b.String()
}

// ParseOptions validates raw create options and returns them parsed together with their
// canonical form (so "755" and "0755" compare equal).
func ParseOptions(raw map[string]string) (Options, map[string]string, error) {
	opts := Options{Mode: 0o755}
	canon := make(map[string]string, len(raw))
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		spec, ok := optionSpecs[k]
		if !ok {
			return Options{}, nil, fmt.Errorf("%w %q: valid options are %s", ErrInvalidOption, k, strings.Join(ValidOptions(), ", "))
		}
		if err := spec.apply(&opts, raw[k]); err != nil {
			return Options{}, nil, fmt.Errorf("%w %s=%q: %s", ErrInvalidOption, k, raw[k], err.Error())
		}
	}
	if opts.From != "" || opts.SHA256 != "" {
		if opts.From == "" {
			return Options{}, nil, fmt.Errorf("%w sha256: it checks the archive given in from=URL, and there is none", ErrInvalidOption)
		}
		src, err := source.Parse(opts.From, opts.SHA256)
		if err != nil {
			return Options{}, nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		opts.SHA256 = src.SHA256
	}
	for k := range raw {
		switch k {
		case "uid":
			canon[k] = strconv.Itoa(opts.UID)
		case "gid":
			canon[k] = strconv.Itoa(opts.GID)
		case "mode":
			canon[k] = fmt.Sprintf("%04o", unixMode(opts.Mode))
		case optAllowPrivileged:
			canon[k] = strconv.FormatBool(opts.AllowPrivileged)
		case optReplicas:
			canon[k] = strconv.Itoa(opts.Replicas)
		case optReplicaNodes:
			canon[k] = opts.ReplicaNodes
		case optSyncInterval:
			canon[k] = opts.SyncInterval.String()
		case optMaxLag:
			canon[k] = max(opts.MaxLag, 0).String()
		case optFrom:
			canon[k] = opts.From
		case optSHA256:
			canon[k] = opts.SHA256
		}
	}
	return opts, canon, nil
}

func parseID(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("want a number from 0 to %d", 1<<31-1)
	}
	return int(n), nil
}

func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// formatOptions renders canonical options for an error message: "mode=0700 uid=1000",
// or "none".
func formatOptions(canon map[string]string) string {
	if len(canon) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(canon))
	for _, k := range slices.Sorted(maps.Keys(canon)) {
		parts = append(parts, k+"="+canon[k])
	}
	return strings.Join(parts, " ")
}

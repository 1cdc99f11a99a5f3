// Package progress is how far a transfer of a volume to a node has come: one model for
// the transfer engine that counts what arrives, the cluster store that publishes it to
// every node, the volume manager and daemon that show it, and the CLI that draws it.
//
// A transfer is a move (a Mount on another node, 'drayage volume move'), a copy
// ('drayage volume copy') or a seed (a volume created with -o from=URL, filled from
// there); the cluster's claim kind "migrate" is a move here.
package progress

import (
	"fmt"
	"math"
	"time"
)

// Kinds of transfer, as Transfer.Kind says them.
const (
	KindMove = "move"
	KindCopy = "copy"
	// KindSeed fills a new volume from its source (-o from=URL): From is the source's
	// URL, To the volume's node.
	KindSeed = "seed"
	// KindBackup backs a volume up (drayage volume backup): From is the volume's node,
	// To the backup's location. It is kept on that node only, not in the cluster store.
	KindBackup = "backup"
)

// Counts are what has arrived of what is to arrive. The totals count what the sender
// sends: a transfer that resumes, or updates an older copy, sends only what differs.
// Both totals are 0 until the nodes have compared their files.
type Counts struct {
	Bytes      int64 `json:"bytes"`
	Total      int64 `json:"total"`
	Files      int   `json:"files"`
	TotalFiles int   `json:"total_files"`
}

// Compared reports whether the nodes have compared their files (the totals are known).
func (c Counts) Compared() bool { return c.Total > 0 || c.TotalFiles > 0 }

// Complete reports whether all has arrived.
func (c Counts) Complete() bool { return c.Bytes >= c.Total && c.Files >= c.TotalFiles }

// Percent is how much of Total has arrived, 0 to 100 (of the files, if they are all
// empty).
func (c Counts) Percent() int {
	switch {
	case c.Total > 0:
		return int(min(100, c.Bytes*100/c.Total))
	case c.TotalFiles > 0:
		return min(100, c.Files*100/c.TotalFiles)
	}
	return 0
}

// Amount says how far the transfer has come: "41%, 2.1 of 5.0 GiB", or what it is doing
// before any content moves.
func (c Counts) Amount() string {
	if !c.Compared() {
		return "comparing files"
	}
	return fmt.Sprintf("%d%%, %s", c.Percent(), BytesOf(c.Bytes, c.Total))
}

// Transfer is one transfer of Volume to node To from node From, as far as it has come.
// Every node sees it, from the cluster store.
type Transfer struct {
	Volume string `json:"volume"`
	// Kind is KindMove or KindCopy; Copy names the new volume of a copy.
	Kind string `json:"kind"`
	Copy string `json:"copy,omitempty"`
	From string `json:"from"`
	To   string `json:"to"`
	Counts
	// Started is when the transfer began; Updated when Counts were last taken.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// Rate is the mean rate from Started to Updated, in bytes per second (0 before any time
// has passed).
func (t Transfer) Rate() int64 {
	if d := t.Updated.Sub(t.Started).Seconds(); d > 0 {
		return int64(float64(t.Bytes) / d)
	}
	return 0
}

// String is the one-line summary 'docker volume inspect' shows in the volume's Status:
// "41% (2.1 of 5.0 GiB) from node-a, 120.0 MiB/s".
func (t Transfer) String() string {
	if !t.Compared() {
		if t.Kind == KindSeed {
			return "starting the download from " + t.From
		}
		return fmt.Sprintf("comparing files with node %s", t.From)
	}
	s := fmt.Sprintf("%d%% (%s) from %s", t.Percent(), BytesOf(t.Bytes, t.Total), t.From)
	if r := t.Rate(); r > 0 {
		s += ", " + BytesUnit(r) + "/s"
	}
	return s
}

var binaryUnits = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}

// unitOf picks the binary unit for n: the largest with n at least 1 of it.
func unitOf(n int64) (float64, string) {
	i := 0
	if n > 0 {
		i = min(len(binaryUnits)-1, int(math.Log2(float64(n))/10))
	}
	return math.Pow(1024, float64(i)), binaryUnits[i]
}

// BytesOf renders part of a whole in the whole's unit: "2.1 of 5.0 GiB".
func BytesOf(part, whole int64) string {
	div, unit := unitOf(whole)
	if unit == "B" {
		return fmt.Sprintf("%d of %d B", part, whole)
	}
	return fmt.Sprintf("%.1f of %.1f %s", float64(part)/div, float64(whole)/div, unit)
}

// BytesUnit renders a byte count: "120.0 MiB".
func BytesUnit(n int64) string {
	div, unit := unitOf(n)
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", float64(n)/div, unit)
}

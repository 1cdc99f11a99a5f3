package localstore

import (
	"maps"
	"time"
)

// Record is what a node keeps about one volume it holds.
type Record struct {
	Name    string            `json:"name"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
	// Mounts counts the active mounts by the ID the engine gave each one.
	Mounts map[string]int `json:"mounts,omitempty"`
	// Epoch is the fencing epoch the copy was committed at: what the cluster record's
	// epoch must be for this copy to be the volume (0: a copy kept from before epochs were
	// recorded here; it takes the record's epoch).
	Epoch uint64 `json:"epoch,omitempty"`
	// Pending says the copy was installed for a move to this node, at Epoch, whose commit
	// in the cluster store was not yet seen: until it is, the copy is not the volume.
	Pending bool `json:"pending,omitempty"`
	// Root is the root hash (hex) of the copy as it was pulled and verified, if it was.
	Root string `json:"root,omitempty"`
	// MovedTo names the node the volume moved on to, at epoch MovedAt, while this node
	// keeps its old copy (a replica): the node confirmed it holds the volume, and this
	// copy is not the volume any more.
	MovedTo string `json:"moved_to,omitempty"`
	MovedAt uint64 `json:"moved_at,omitempty"`
	// Synced is when the replica's last sync from the volume's owner completed, for a
	// replica kept current by syncs (see volume's replica.go); zero for an old copy kept
	// after a move.
	Synced time.Time `json:"synced,omitzero"`
	// Filling says the volume was created with -o from=URL and is not filled yet: its
	// data dir is empty, and it is neither mounted nor sent until the fill is installed.
	Filling bool `json:"filling,omitempty"`
}

// Replica reports whether the copy is an old one, kept after the volume moved on.
func (r Record) Replica() bool { return r.MovedTo != "" }

// MountCount is the number of active mounts across all IDs.
func (r Record) MountCount() int {
	n := 0
	for _, c := range r.Mounts {
		n += c
	}
	return n
}

// Clone returns a deep copy, so a caller can change it without touching the original.
func (r Record) Clone() Record {
	r.Options = maps.Clone(r.Options)
	r.Mounts = maps.Clone(r.Mounts)
	return r
}

package volume

import (
	"fmt"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

// A node never acts on its copy of a volume on the cluster record's word alone: the
// record can be forged, or rolled back by a restored snapshot. Its copy carries the epoch
// it was committed at, and judge compares the two. The node drops its copy only for a
// record of a later epoch whose owner confirms it holds that epoch (proof, in settle.go),
// deletes it for a removal only at its own epoch or later, and never for a record older
// than the copy or one that contradicts it: those are reported, and the newest copy
// writes the record again.

// judgment is what a node does with its copy of a volume.
type judgment int

const (
	// ownIt: the copy is the volume, at the record's epoch: keep its claims right and
	// finish a removal.
	ownIt judgment = iota
	// adoptEpoch: a copy kept from before epochs were recorded, held here by the record:
	// it takes the record's epoch, then is owned.
	adoptEpoch
	// register: there is no record; the copy registers the volume again, as held here.
	register
	// reclaim: the record is older than the copy (a restored snapshot, a forged write):
	// reported, and the copy writes the record again at its own epoch.
	reclaim
	// proveMoved: the volume moved on to a later epoch elsewhere: once its owner
	// confirms it, the copy is dropped (or kept as a replica).
	proveMoved
	// confirmPending: the record commits the move this copy was pulled for.
	confirmPending
	// awaitPending: the move this copy was pulled for may still commit.
	awaitPending
	// revertPending: the move this copy was pulled for did not commit: the copy goes
	// back to staging, for the next attempt.
	revertPending
	// keepReplica: a replica, consistent with the record.
	keepReplica
	// adoptPromotion: a replica the record makes the volume, at the epoch after its
	// sync, with its root hash: a failover promoted it. It becomes the volume here.
	adoptPromotion
	// removeReplica: a replica of a volume removed at a later epoch.
	removeReplica
	// conflict: the record contradicts the copy: reported; the copy is kept, unused.
	conflict
	// orphan: a replica or a pending copy of a volume with no record: kept, reported.
	orphan
)

// judge decides what node does with its copy l of a volume, given the record e (nil if
// there is none). why explains a conflict, a reclaim or an orphan for the report.
func judge(node string, l localstore.Record, e *cluster.Entry) (j judgment, why string) {
	if e == nil {
		if l.Pending || l.Replica() {
			return orphan, fmt.Sprintf("the cluster store has no record of volume %q; node %q keeps its copy (epoch %d) in case it is the last one", l.Name, node, l.Epoch)
		}
		return register, ""
	}
	v := e.Volume
	switch {
	case l.Pending:
		// A pending copy is never the only copy of anything: its sender keeps the volume
		// until this node, once committed, confirms it holds it.
		switch {
		case v.Owner == node && v.Epoch == l.Epoch:
			return confirmPending, ""
		case e.Claim != nil && e.Claim.Kind == cluster.ClaimMigrate && e.Claim.Node == node && e.Claim.Epoch == l.Epoch:
			return awaitPending, ""
		}
		return revertPending, ""
	case l.Replica():
		switch {
		case v.Removing && v.Epoch >= l.MovedAt:
			return removeReplica, ""
		case v.Owner == node && v.Epoch == l.MovedAt+1 && l.Root != "" && v.Root == l.Root:
			return adoptPromotion, ""
		case v.Owner == node:
			return conflict, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, but that node keeps only an old copy (epoch %d) since the volume moved to node %q at epoch %d",
				l.Name, node, v.Epoch, l.Epoch, l.MovedTo, l.MovedAt)
		case v.Epoch < l.MovedAt:
			return conflict, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, but node %q confirmed it held epoch %d: the store was restored from an old snapshot or the record was written by hand",
				l.Name, v.Owner, v.Epoch, l.MovedTo, l.MovedAt)
		}
		return keepReplica, ""
	case l.Epoch == 0:
		if v.Owner == node {
			return adoptEpoch, ""
		}
		return proveMoved, ""
	case v.Epoch < l.Epoch:
		return reclaim, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, older than node %q's copy (epoch %d): the store was restored from an old snapshot, or the record was written by hand",
			l.Name, v.Owner, v.Epoch, node, l.Epoch)
	case v.Owner == node && v.Epoch == l.Epoch:
		return ownIt, ""
	case v.Owner != node && v.Epoch > l.Epoch:
		return proveMoved, ""
	case v.Owner != node:
		return conflict, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, the epoch of node %q's own copy", l.Name, v.Owner, v.Epoch, node)
	}
	return conflict, fmt.Sprintf("the record of volume %q says node %q holds it at epoch %d, but its copy there is of epoch %d", l.Name, node, v.Epoch, l.Epoch)
}

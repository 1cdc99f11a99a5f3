package volume

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/daemon/localstore"
)

func TestJudgeNeverDropsACopyOnTheRecordsWordAlone(t *testing.T) {
	copyAt := func(epoch uint64) localstore.Record { return localstore.Record{Name: "db", Epoch: epoch} }
	rec := func(owner string, epoch uint64) *cluster.Entry {
		return &cluster.Entry{Volume: cluster.Volume{Name: "db", Owner: owner, Epoch: epoch}}
	}
	removing := func(e *cluster.Entry) *cluster.Entry { e.Volume.Removing = true; return e }
	pending := func(r localstore.Record) localstore.Record { r.Pending = true; return r }
	replica := func(r localstore.Record, to string, at uint64) localstore.Record {
		r.MovedTo, r.MovedAt = to, at
		return r
	}
	rooted := func(r localstore.Record, root string) localstore.Record { r.Root = root; return r }
	promoted := func(e *cluster.Entry, root string) *cluster.Entry { e.Volume.Root = root; return e }
	migrating := func(e *cluster.Entry, node string, epoch uint64) *cluster.Entry {
		e.Claim = &cluster.Claim{Kind: cluster.ClaimMigrate, Node: node, Epoch: epoch}
		return e
	}
	for name, tc := range map[string]struct {
		copy localstore.Record
		rec  *cluster.Entry
		want judgment
	}{
		"the record agrees":                  {copyAt(3), rec("a", 3), ownIt},
		"removal at the copy's epoch":        {copyAt(3), removing(rec("a", 3)), ownIt},
		"removal at an older epoch":          {copyAt(3), removing(rec("a", 2)), reclaim},
		"the record is older (a restore)":    {copyAt(3), rec("b", 2), reclaim},
		"moved on: needs the owner's word":   {copyAt(3), rec("b", 4), proveMoved},
		"another owner at the copy's epoch":  {copyAt(3), rec("b", 3), conflict},
		"this node at a later epoch":         {copyAt(3), rec("a", 4), conflict},
		"no record: register again":          {copyAt(3), nil, register},
		"from before epochs, held here":      {copyAt(0), rec("a", 5), adoptEpoch},
		"from before epochs, held elsewhere": {copyAt(0), rec("b", 5), proveMoved},
		"pending, committed":                 {pending(copyAt(4)), rec("a", 4), confirmPending},
		"pending, the claim still runs":      {pending(copyAt(4)), migrating(rec("b", 3), "a", 4), awaitPending},
		"pending, not committed":             {pending(copyAt(4)), rec("b", 3), revertPending},
		"pending, another node won":          {pending(copyAt(4)), rec("c", 4), revertPending},
		"pending, no record":                 {pending(copyAt(4)), nil, orphan},
		"replica, consistent":                {replica(copyAt(3), "b", 4), rec("b", 4), keepReplica},
		"replica, moved further":             {replica(copyAt(3), "b", 4), rec("c", 6), keepReplica},
		"replica of a removed volume":        {replica(copyAt(3), "b", 4), removing(rec("b", 4)), removeReplica},
		"replica, a rolled-back removal":     {replica(copyAt(3), "b", 4), removing(rec("a", 3)), conflict},
		"replica, the record rolled back":    {replica(copyAt(3), "b", 4), rec("b", 3), conflict},
		"replica, the record names it":       {replica(copyAt(3), "b", 4), rec("a", 5), conflict},
		"replica, promoted":                  {rooted(replica(copyAt(4), "b", 4), "r1"), promoted(rec("a", 5), "r1"), adoptPromotion},
		"replica, another root promoted":     {rooted(replica(copyAt(4), "b", 4), "r1"), promoted(rec("a", 5), "r2"), conflict},
		"replica, promoted later":            {rooted(replica(copyAt(4), "b", 4), "r1"), promoted(rec("a", 6), "r1"), conflict},
		"replica, no record":                 {replica(copyAt(3), "b", 4), nil, orphan},
	} {
		t.Run(name, func(t *testing.T) {
			got, why := judge("a", tc.copy, tc.rec)
			assert.Equal(t, tc.want, got)
			if got == conflict || got == reclaim || got == orphan {
				assert.NotEmpty(t, why, "a finding is explained")
			}
		})
	}
}

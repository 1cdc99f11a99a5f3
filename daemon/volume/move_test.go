package volume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/progress"
)

// fakePuller moves volumes between managers in one process: it asks the owner's manager
// for the directory to send (with all of SendDir's checks) and copies it.
type fakePuller struct {
	mu       sync.Mutex
	managers map[string]*Manager
	down     map[string]time.Time
	fail     error
	gate     *gate
	requests []PullRequest // every pull asked for, in order
	// holdsFails makes every Holds fail, as with a node that can't be asked.
	holdsFails bool
	// answers names nodes that answer Holds even while gossip calls them down.
	answers map[string]bool
	// syncing names, by volume, the node a replica sync runs to.
	syncing map[string]string
}

// SyncReplica has node's manager sync its replica from the volume's owner, unless node
// is down.
func (f *fakePuller) SyncReplica(ctx context.Context, node, volume string, epoch uint64, how SyncHow) (ReplicaSynced, error) {
	f.mu.Lock()
	m, known := f.managers[node]
	_, isDown := f.down[node]
	if f.syncing == nil {
		f.syncing = map[string]string{}
	}
	f.syncing[volume] = node
	f.mu.Unlock()
	if !known || isDown {
		return ReplicaSynced{}, fmt.Errorf("node %q is down", node)
	}
	e, err := m.reg.Get(ctx, volume)
	if err != nil {
		return ReplicaSynced{}, err
	}
	return m.SyncReplica(ctx, volume, e.Volume.Owner, epoch, how)
}

// DropReplica has node's manager drop its replica, unless node is down.
func (f *fakePuller) DropReplica(ctx context.Context, node, volume string, epoch uint64) error {
	f.mu.Lock()
	m, known := f.managers[node]
	_, isDown := f.down[node]
	f.mu.Unlock()
	if !known || isDown {
		return fmt.Errorf("node %q is down", node)
	}
	e, err := m.reg.Get(ctx, volume)
	if err != nil {
		return err
	}
	return m.DropReplica(ctx, volume, e.Volume.Owner, epoch)
}

// Peers lists every manager's node, alive unless down, with as much free space each.
func (f *fakePuller) Peers() []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Peer
	for node := range f.managers {
		seen, isDown := f.down[node]
		if !isDown {
			seen = time.Now()
		}
		out = append(out, Peer{Name: node, Alive: !isDown, LastSeen: seen, Free: 1 << 30})
	}
	return out
}

func (f *fakePuller) Peer(node string) (bool, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seen, ok := f.down[node]; ok {
		return false, seen
	}
	return true, time.Now()
}

func (f *fakePuller) Pull(ctx context.Context, r PullRequest) (Pulled, error) {
	f.mu.Lock()
	owner, fail, gate := f.managers[r.From], f.fail, f.gate
	f.requests = append(f.requests, r)
	f.mu.Unlock()
	if fail != nil {
		return Pulled{}, fail
	}
	if gate != nil {
		if err := gate.pass(ctx, r.Progress); err != nil {
			return Pulled{}, err
		}
	}
	size, err := f.copy(ctx, owner, r.Volume, r.Epoch, r.Staging)
	return Pulled{Size: size, Root: treeDigest(r.Staging)}, err
}

// treeDigest stands for a tree's root hash: equal for trees with the same names,
// kinds, modes and contents.
func treeDigest(dir string) string {
	h := sha256.New()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		fmt.Fprintf(h, "%s %v\n", rel, info.Mode())
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// RemovalAsked asks node's manager, unless it is down.
func (f *fakePuller) RemovalAsked(ctx context.Context, node, volume string, epoch uint64) (bool, error) {
	f.mu.Lock()
	m, known := f.managers[node]
	_, isDown := f.down[node]
	f.mu.Unlock()
	if !known || isDown {
		return false, fmt.Errorf("node %q is down", node)
	}
	return m.RemovalAsked(ctx, volume, epoch)
}

// Holds asks node's manager, unless it is down.
// Answers says whether node would answer a call: it is up, or named in answers.
func (f *fakePuller) Answers(_ context.Context, node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, known := f.managers[node]
	_, isDown := f.down[node]
	return known && (!isDown || f.answers[node])
}

func (f *fakePuller) Holds(ctx context.Context, node, volume string) (Holding, error) {
	f.mu.Lock()
	owner, known := f.managers[node]
	_, isDown := f.down[node]
	fails := f.holdsFails
	answers := f.answers[node]
	f.mu.Unlock()
	if !known || isDown && !answers || fails {
		return Holding{}, fmt.Errorf("node %q does not answer", node)
	}
	return owner.Holding(ctx, volume)
}

// gate holds pulls back: each reports progress, then waits until the gate opens (or
// fails) or its context ends.
type gate struct {
	started chan struct{} // one value per pull that reached the gate
	open    chan error    // receives the outcome of one pull
	report  progress.Counts
}

func newGate(report progress.Counts) *gate {
	return &gate{started: make(chan struct{}, 16), open: make(chan error, 16), report: report}
}

func (g *gate) pass(ctx context.Context, report func(progress.Counts)) error {
	if report != nil {
		report(g.report)
	}
	g.started <- struct{}{}
	select {
	case err := <-g.open:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakePuller) copy(ctx context.Context, owner *Manager, volume string, epoch uint64, staging string) (int64, error) {
	// The target is whoever holds the migration claim at this epoch, or the node a
	// replica sync runs to.
	e, err := owner.reg.Get(ctx, volume)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	node := f.syncing[volume]
	f.mu.Unlock()
	if e.Claim != nil && e.Claim.Kind != cluster.ClaimMount {
		node = e.Claim.Node
	}
	if node == "" {
		return 0, errors.New("no claim")
	}
	dir, err := owner.SendDir(ctx, volume, node, epoch)
	if err != nil {
		return 0, err
	}
	_ = os.RemoveAll(staging)
	if err := os.CopyFS(staging, os.DirFS(dir)); err != nil {
		return 0, err
	}
	var size int64
	_ = filepath.Walk(staging, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	return size, nil
}

func twoNodes(t *testing.T) (a, b *Manager, fa, fb *fixture, p *fakePuller) {
	fa = newFixture(t)
	fb = newNode(t, "node-b", fa.reg)
	p = connect(fa, fb)
	a, b = fa.start(t), fb.start(t)
	return a, b, fa, fb, p
}

// add makes node's manager m reachable.
func (f *fakePuller) add(node string, m *Manager) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.managers[node] = m
}

func TestMountElsewhereMovesTheVolumeThere(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _ := twoNodes(t)
	require.NoError(t, a.Create(ctx, "db", nil))
	require.NoError(t, os.WriteFile(filepath.Join(fa.root, "volumes", "db", "data", "table"), []byte("rows"), 0o644))

	mp, err := b.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	src := fb.mounter.Source(mp)
	got, err := os.ReadFile(filepath.Join(src, "table"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(got), "the container on node-b sees node-a's data")

	info, err := a.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, uint64(2), info.Epoch, "the fencing epoch went up")
	assert.Equal(t, StateMounted, info.State)
	assert.Equal(t, 1, info.Mounts)
	assert.NoDirExists(t, fb.root+"/staging/db", "staging became the volume")

	a.Reconcile(ctx)
	assert.NoDirExists(t, filepath.Join(fa.root, "volumes", "db"), "node-a dropped its old copy")
	_, err = a.Mount(ctx, "db", "c2")
	require.ErrorIs(t, err, ErrInUse)
	assert.Contains(t, err.Error(), `volume "db" is mounted on node "node-b" by 1 container; stop it there or use 'drayage volume move db --to node-a'`)
}

func TestMountElsewhereFailsFastAndCleanlyWhenItCannotMove(t *testing.T) {
	ctx := context.Background()
	a, b, fa, _, p := twoNodes(t)
	b.cfg.DynamicLimit = 100
	require.NoError(t, a.Create(ctx, "db", nil))
	require.NoError(t, os.WriteFile(filepath.Join(fa.root, "volumes", "db", "data", "f"), make([]byte, 1000), 0o644))
	_, err := a.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	require.NoError(t, a.Unmount(ctx, "db", "c1")) // records the size, 1000 bytes
	require.Eventually(t, func() bool { e, _ := fa.reg.Get(ctx, "db"); return e.Volume.Size == 1000 }, 5*time.Second, 20*time.Millisecond)

	_, err = b.Mount(ctx, "db", "c9")
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "holds 1000B, above the 100B that a container start moves")
	assert.Contains(t, err.Error(), "move it first with 'drayage volume move db --to node-b'")
	b.cfg.DynamicLimit = 0

	p.down["node-a"] = time.Now().Add(-2 * time.Minute)
	_, err = b.Mount(ctx, "db", "c9")
	require.ErrorIs(t, err, ErrOwnerDown)
	assert.Contains(t, err.Error(), `held by node "node-a", which is down (last seen 2 minutes ago)`)
	delete(p.down, "node-a")

	p.fail = errors.New("connection reset")
	_, err = b.Mount(ctx, "db", "c9")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `pulling it from node "node-a" failed: connection reset`)
	e, err := fa.reg.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateIdle, e.State(), "the failed move released its claim")
	assert.Equal(t, "node-a", e.Volume.Owner)
	assert.Equal(t, uint64(1), e.Volume.Epoch)
	assert.FileExists(t, filepath.Join(fa.root, "volumes", "db", "data", "f"), "node-a's data is untouched")
}

// The size in the record may be stale (it is measured at unmount): the pull itself is
// bounded by the dynamic limit, and carries the volume's privileged-content policy.
func TestAMountsPullIsBoundedByTheDynamicLimitItself(t *testing.T) {
	ctx := context.Background()
	a, b, _, _, p := twoNodes(t)
	b.cfg.DynamicLimit = 100
	require.NoError(t, a.Create(ctx, "db", map[string]string{"allow-privileged": "true"}))
	require.NoError(t, a.Create(ctx, "plain", nil))
	_, err := b.Mount(ctx, "db", "c1")
	require.NoError(t, err)
	_, err = b.Move(ctx, "plain")
	require.NoError(t, err)
	require.Len(t, p.requests, 2)
	assert.Equal(t, int64(100), p.requests[0].MaxBytes, "a Mount pulls at most the dynamic limit")
	assert.True(t, p.requests[0].AllowPrivileged)
	assert.Zero(t, p.requests[1].MaxBytes, "a move takes any size")
	assert.False(t, p.requests[1].AllowPrivileged)
}

func TestTwoNodesMountingAtOnceOneWins(t *testing.T) {
	ctx := context.Background()
	a, b, fa, _, p := twoNodes(t)
	fc := newNode(t, "node-c", fa.reg)
	c := fc.start(t)
	p.managers["node-c"] = c
	c.SetPuller(p)
	require.NoError(t, a.Create(ctx, "db", nil))

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*Manager{b, c} {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = m.Mount(ctx, "db", "c1") }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, ErrInUse)
		}
	}
	assert.Equal(t, 1, ok, "exactly one node gets the volume; the other a clear error")
}

func TestMoveBringsAVolumeOfAnySizeHereUnmounted(t *testing.T) {
	ctx := context.Background()
	a, b, fa, fb, _ := twoNodes(t)
	b.cfg.DynamicLimit = 1 // a Mount would refuse it
	require.NoError(t, a.Create(ctx, "db", nil))
	require.NoError(t, os.WriteFile(filepath.Join(fa.root, "volumes", "db", "data", "f"), make([]byte, 1000), 0o644))

	res, err := b.Move(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, MoveResult{Volume: "db", From: "node-a", To: "node-b", Bytes: 1000, Took: res.Took}, res)
	info, err := b.Get(ctx, "db")
	require.NoError(t, err)
	assert.Equal(t, "node-b", info.Node)
	assert.Equal(t, StateIdle, info.State, "moved, not mounted")
	assert.FileExists(t, filepath.Join(fb.root, "volumes", "db", "data", "f"))

	res, err = b.Move(ctx, "db")
	require.NoError(t, err)
	assert.Zero(t, res.Bytes, "already here: nothing moves")
	_, err = b.Mount(ctx, "db", "c1")
	require.NoError(t, err, "a volume already here mounts whatever its size")
	_, err = a.Move(ctx, "db")
	require.ErrorIs(t, err, ErrInUse, "a mounted volume is not moved")
}

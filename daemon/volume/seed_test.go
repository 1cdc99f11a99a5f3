package volume

import (
	"context"
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

// fakeSeeder fills staging with one file, hello, once release is closed; fail, if set,
// is what each try returns instead (and tries counts them).
type fakeSeeder struct {
	release chan struct{}
	mu      sync.Mutex
	fail    []error
	tries   int
}

func (s *fakeSeeder) Seed(ctx context.Context, r SeedRequest) (Pulled, error) {
	r.Progress(progress.Counts{Bytes: 1, Total: 4})
	select {
	case <-s.release:
	case <-ctx.Done():
		return Pulled{}, ctx.Err()
	}
	s.mu.Lock()
	s.tries++
	var err error
	if len(s.fail) > 0 {
		err, s.fail = s.fail[0], s.fail[1:]
	}
	s.mu.Unlock()
	if err != nil {
		return Pulled{}, err
	}
	if err := os.MkdirAll(r.Staging, 0o755); err != nil {
		return Pulled{}, err
	}
	if err := os.WriteFile(filepath.Join(r.Staging, "hello"), []byte("seeded"), 0o644); err != nil {
		return Pulled{}, err
	}
	return Pulled{Size: 6, Root: "r00t", Sent: 6}, nil
}

var seedOpts = map[string]string{"from": "https://example.test/data.tar.gz?X-Amz-Signature=s3cret"}

// Create answers at once; a Mount before the fill is done waits and then says how far
// it is; the container sees the filled volume at its first successful start.
func TestAMountWaitsForTheFillAndNeverSeesItHalfDone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := &fakeSeeder{release: make(chan struct{})}
	f.seeder = s
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "web", seedOpts))
	e, err := f.reg.Get(ctx, "web")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateFilling, e.State())

	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	_, err = m.Mount(short, "web", "c1")
	require.ErrorIs(t, err, ErrPulling)
	assert.Contains(t, err.Error(), `volume "web" is still being filled from https://example.test/data.tar.gz on node "node-a": 25%`)
	assert.NotContains(t, err.Error(), "s3cret", "a URL's query is never shown")
	assert.Equal(t, 0, f.mounter.Count(), "nothing was mounted")

	close(s.release)
	mp, err := m.Mount(ctx, "web", "c1")
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(f.root, "volumes", "web", "data", "hello"))
	require.NoError(t, err)
	assert.Equal(t, "seeded", string(b))
	assert.Equal(t, filepath.Join(f.mountDir, "web"), mp)
	e, err = f.reg.Get(ctx, "web")
	require.NoError(t, err)
	assert.Equal(t, cluster.StateMounted, e.State(), "the seed claim went; the mount claim holds it")
	assert.Equal(t, "r00t", e.Volume.Root)
	assert.Equal(t, int64(6), e.Volume.Size)
}

// A failure that may pass is tried again; a source that refuses for good leaves no
// volume, and says why to the Mount waiting.
func TestAFillIsTriedAgainUntilTheSourceRefusesForGood(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := &fakeSeeder{release: make(chan struct{}), fail: []error{fmt.Errorf("connection reset"), fmt.Errorf("%w: sha256 mismatch", ErrSeedRefused)}}
	close(s.release)
	f.seeder = s
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "web", seedOpts))
	_, err := m.Mount(ctx, "web", "c1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sha256 mismatch")
	assert.Equal(t, 2, s.tries, "one try again after the reset")
	require.Eventually(t, func() bool {
		_, err := f.reg.Get(ctx, "web")
		return err != nil
	}, 5*time.Second, 50*time.Millisecond, "the volume is gone from the cluster")
	assert.NoDirExists(t, filepath.Join(f.root, "volumes", "web"), "and from the disk")
}

// A restarted daemon takes up the fill of a volume it had not filled; removing a volume
// that is filling gives the fill up.
func TestAFillOutlivesARestartAndEndsWithTheVolume(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := &fakeSeeder{release: make(chan struct{})}
	f.seeder = s
	m := f.start(t)
	require.NoError(t, m.Create(ctx, "web", seedOpts))
	require.NoError(t, m.Create(ctx, "gone", seedOpts))
	m.Close()

	m2 := f.start(t)
	m2.Reconcile(ctx)
	require.NoError(t, m2.Remove(ctx, "gone"))
	_, err := f.reg.Get(ctx, "gone")
	require.Error(t, err, "a volume still filling is removed at once")
	close(s.release)
	require.Eventually(t, func() bool {
		e, err := f.reg.Get(ctx, "web")
		return err == nil && e.State() == cluster.StateIdle && e.Volume.Root == "r00t"
	}, 5*time.Second, 50*time.Millisecond, "the fill was taken up after the restart and recorded")
	assert.FileExists(t, filepath.Join(f.root, "volumes", "web", "data", "hello"))
	assert.NoDirExists(t, filepath.Join(f.root, "volumes", "gone"))
}

// A container started on another node while the volume fills waits for the fill within
// its budget (then says how far it is), and then the volume moves there, filled.
func TestAMountOnAnotherNodeWaitsForTheFill(t *testing.T) {
	ctx := context.Background()
	fa := newFixture(t)
	fb := newNode(t, "node-b", fa.reg)
	connect(fa, fb)
	s := &fakeSeeder{release: make(chan struct{})}
	fa.seeder = s
	a, b := fa.start(t), fb.start(t)
	require.NoError(t, a.Create(ctx, "web", seedOpts))

	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	_, err := b.Mount(short, "web", "c1")
	require.ErrorIs(t, err, ErrPulling)
	assert.Contains(t, err.Error(), `volume "web" is still being filled from https://example.test/data.tar.gz on node "node-a": 25%`)

	time.AfterFunc(time.Second, func() { close(s.release) })
	_, err = b.Mount(ctx, "web", "c1")
	require.NoError(t, err, "the Mount waited for the fill, then pulled the volume")
	b2, err := os.ReadFile(filepath.Join(fb.root, "volumes", "web", "data", "hello"))
	require.NoError(t, err)
	assert.Equal(t, "seeded", string(b2))
}

package backup

import "testing"

// SetSnapshotRemovedHook has f run after each snapshot a prune removes, until the test ends.
func SetSnapshotRemovedHook(t testing.TB, f func()) {
	testHookSnapshotRemoved = f
	t.Cleanup(func() { testHookSnapshotRemoved = nil })
}

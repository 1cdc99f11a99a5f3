package keylock

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLockSerialisesOneKeyAndForgetsIdleKeys(t *testing.T) {
	var l Locks
	var wg sync.WaitGroup
	counter := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := l.Lock("v")
			counter++
			unlock()
		}()
	}
	wg.Wait()
	require.Equal(t, 50, counter)
	require.Empty(t, l.locks)
}

func TestLockDoesNotBlockOtherKeys(t *testing.T) {
	var l Locks
	unlockA := l.Lock("a")
	defer unlockA()
	done := make(chan struct{})
	go func() {
		l.Lock("b")()
		close(done)
	}()
	<-done
}

package volume

import "github.com/drayage/drayage/cluster"

// local is what this node keeps in memory about one volume, besides its data and its
// record on disk: the mount claim it holds on the volume, the pull bringing it here,
// whether its mount mark was checked since the lease changed, how many pulls use its
// staging tree, and the sync running into its replica here. It is guarded by Manager.mu, and dropped when it holds nothing.
type local struct {
	claim        *cluster.Claim
	job          *pullJob // running, or failed with nobody told yet
	markChecked  bool
	stagingUsers int
	sync         *replicaSync // a sync into this node's replica, running
}

func (v *local) empty() bool {
	return v.claim == nil && v.job == nil && !v.markChecked && v.stagingUsers == 0 && v.sync == nil
}

// with runs f on the local state of volume name, made if there is none, under m.mu,
// and drops that state again if f leaves it empty.
func (m *Manager) with(name string, f func(v *local)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vols[name]
	if v == nil {
		v = &local{}
		m.vols[name] = v
	}
	f(v)
	m.tidy(name, v)
}

// tidy drops v, volume name's local state, if it holds nothing. The caller holds m.mu.
func (m *Manager) tidy(name string, v *local) {
	if v.empty() {
		delete(m.vols, name)
	}
}

// claim is this node's mount claim on volume name, if it holds one.
func (m *Manager) claim(name string) (c *cluster.Claim) {
	m.with(name, func(v *local) { c = v.claim })
	return c
}

func (m *Manager) setClaim(name string, c *cluster.Claim) {
	m.with(name, func(v *local) { v.claim = c })
}

// markUnchecked reports whether the volume's mount mark is still to be checked since
// this node's lease last changed, and notes it checked.
func (m *Manager) markUnchecked(name string) (unchecked bool) {
	m.with(name, func(v *local) {
		unchecked = !v.markChecked
		v.markChecked = true
	})
	return unchecked
}

func (m *Manager) recheckMark(name string) {
	m.with(name, func(v *local) { v.markChecked = false })
}

// useStaging notes that a pull runs into the staging tree of volume name, until the
// function it returns is called.
func (m *Manager) useStaging(name string) func() {
	m.with(name, func(v *local) { v.stagingUsers++ })
	return func() { m.with(name, func(v *local) { v.stagingUsers-- }) }
}

// stagingInUse reports whether a pull runs into the staging tree of volume name.
func (m *Manager) stagingInUse(name string) (used bool) {
	m.with(name, func(v *local) { used = v.stagingUsers > 0 })
	return used
}

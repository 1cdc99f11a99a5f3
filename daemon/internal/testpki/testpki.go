// Package testpki makes node identities for tests and examples: a cluster CA and each
// node's TLS dir, as 'drayage tls init' writes them, loaded as the daemon loads its own.
package testpki

import (
	"fmt"
	"path/filepath"

	"github.com/drayage/drayage/cluster/identity"
)

// Identities writes a new cluster CA and the TLS dir of each of nodes under dir (dir/NODE,
// as a node's --tls-dir), and loads them.
func Identities(dir string, nodes ...string) (map[string]*identity.Identity, error) {
	ca, err := identity.NewCA("test")
	if err != nil {
		return nil, fmt.Errorf("test CA: %w", err)
	}
	key, err := identity.NewGossipKey()
	if err != nil {
		return nil, fmt.Errorf("test gossip key: %w", err)
	}
	ids := make(map[string]*identity.Identity, len(nodes))
	for _, name := range nodes {
		if err := ca.WriteNode(filepath.Join(dir, name), identity.NodeSpec{Name: name}, key); err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
		if ids[name], err = identity.Load(filepath.Join(dir, name), name); err != nil {
			return nil, fmt.Errorf("node %q: %w", name, err)
		}
	}
	return ids, nil
}

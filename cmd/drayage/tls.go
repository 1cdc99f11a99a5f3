package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/volume"
)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make and inspect the cluster CA and node certificates",
		Long: `Every connection between drayage nodes is mutual TLS 1.3 with certificates signed by
the cluster's own CA, and gossip is encrypted with a shared key. 'tls init' makes the CA,
the key and one directory per node holding exactly what that node's --tls-dir needs.`,
	}
	cmd.AddCommand(newTLSInitCmd(), newTLSAddNodeCmd(), newTLSShowCmd())
	return cmd
}

// nodeAddrs collects --ip and --dns values of the form node=value[,node=value...].
type nodeAddrs struct {
	ips, dns []string
}

func (a *nodeAddrs) flags(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&a.ips, "ip", nil, "node=IP to put in a node's certificate (repeatable, or comma-separated)")
	cmd.Flags().StringArrayVar(&a.dns, "dns", nil, "node=NAME, a DNS name to put in a node's certificate (repeatable, or comma-separated)")
}

// spec builds the certificate spec of one node, checking every --ip/--dns names a known node.
func (a *nodeAddrs) specs(nodes []string) (map[string]identity.NodeSpec, error) {
	specs := make(map[string]identity.NodeSpec, len(nodes))
	for _, n := range nodes {
		if err := volume.ValidateName(n); err != nil {
			return nil, fmt.Errorf("node name %q: use letters, digits, '_', '.' or '-'", n)
		}
		specs[n] = identity.NodeSpec{Name: n}
	}
	each := func(values []string, flag string, add func(spec *identity.NodeSpec, v string) error) error {
		for _, raw := range values {
			for _, item := range strings.Split(raw, ",") {
				node, v, ok := strings.Cut(strings.TrimSpace(item), "=")
				spec, known := specs[node]
				if !ok || v == "" {
					return fmt.Errorf("--%s %q: want NODE=VALUE", flag, item)
				}
				if !known {
					return fmt.Errorf("--%s %q: node %q is not one of %s", flag, item, node, strings.Join(nodes, ", "))
				}
				if err := add(&spec, v); err != nil {
					return fmt.Errorf("--%s %q: %w", flag, item, err)
				}
				specs[node] = spec
			}
		}
		return nil
	}
	if err := each(a.ips, "ip", func(s *identity.NodeSpec, v string) error {
		ip := net.ParseIP(v)
		if ip == nil {
			return errors.New("not an IP address")
		}
		s.IPs = append(s.IPs, ip)
		return nil
	}); err != nil {
		return nil, err
	}
	err := each(a.dns, "dns", func(s *identity.NodeSpec, v string) error {
		s.DNS = append(s.DNS, v)
		return nil
	})
	return specs, err
}

func newTLSInitCmd() *cobra.Command {
	var dir, nodes, name string
	var addrs nodeAddrs
	cmd := &cobra.Command{
		Use:   "init --dir DIR --nodes a,b,c",
		Short: "Make the cluster CA, the gossip key and every node's certificate",
		Example: `  drayage tls init --dir ./pki --nodes node-a,node-b,node-c --ip node-a=10.0.0.1,node-b=10.0.0.2,node-c=10.0.0.3
  # then copy ./pki/node-a/* to /etc/drayage on node-a, and so on; keep ./pki/ca safe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := splitList(nodes)
			if dir == "" || len(list) == 0 {
				return errors.New("give --dir and --nodes")
			}
			specs, err := addrs.specs(list)
			if err != nil {
				return err
			}
			caDir := filepath.Join(dir, "ca")
			if _, err := os.Stat(filepath.Join(caDir, identity.CAFile)); err == nil {
				return fmt.Errorf("a cluster CA already exists in %s; it is never replaced silently. Add nodes with 'drayage tls add-node NAME --dir %s'; to start over, move %s away first",
					caDir, dir, caDir)
			}
			ca, err := identity.NewCA(name)
			if err != nil {
				return err
			}
			key, err := identity.NewGossipKey()
			if err != nil {
				return err
			}
			if err := ca.Save(caDir); err != nil {
				return err
			}
			if err := writeGossipKey(caDir, key); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "cluster CA and gossip key: %s (keep them safe: they admit nodes to the cluster)\n", caDir)
			for _, n := range list {
				if err := ca.WriteNode(filepath.Join(dir, n), specs[n], key); err != nil {
					return err
				}
				printNode(out, filepath.Join(dir, n))
			}
			fmt.Fprintf(out, "install each node's directory as its --tls-dir (default /etc/drayage, the managed plugin's tls mount)\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the CA and the nodes' directories into")
	cmd.Flags().StringVar(&nodes, "nodes", "", "comma-separated node names")
	cmd.Flags().StringVar(&name, "cluster", "cluster", "a name for the cluster, shown in the CA certificate")
	addrs.flags(cmd)
	return cmd
}

func newTLSAddNodeCmd() *cobra.Command {
	var dir string
	var force bool
	var addrs nodeAddrs
	cmd := &cobra.Command{
		Use:   "add-node NAME --dir DIR",
		Short: "Sign a certificate for one more node (or renew one with --force) with the existing CA",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			if dir == "" {
				return errors.New("give --dir, the directory 'drayage tls init' wrote")
			}
			specs, err := addrs.specs([]string{node})
			if err != nil {
				return err
			}
			caDir := filepath.Join(dir, "ca")
			ca, err := identity.LoadCA(caDir)
			if err != nil {
				return fmt.Errorf("%w; add-node needs the CA that 'drayage tls init --dir %s' made", err, dir)
			}
			key, err := identity.ReadGossipKey(filepath.Join(caDir, identity.GossipKeyFile))
			if err != nil {
				return err
			}
			nodeDir := filepath.Join(dir, node)
			if force {
				for _, f := range []string{identity.CAFile, identity.NodeCertFile, identity.NodeKeyFile, identity.GossipKeyFile} {
					if err := os.Remove(filepath.Join(nodeDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
				}
			}
			if err := ca.WriteNode(nodeDir, specs[node], key); err != nil {
				if errors.Is(err, identity.ErrExists) {
					return fmt.Errorf("%w; node %q has files already: use --force to issue a new certificate (renewal)", err, node)
				}
				return err
			}
			printNode(cmd.OutOrStdout(), nodeDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the directory 'drayage tls init' wrote")
	cmd.Flags().BoolVar(&force, "force", false, "replace the node's existing certificate (renewal)")
	addrs.flags(cmd)
	return cmd
}

func newTLSShowCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "show [--tls-dir DIR]",
		Short: "Show a node's certificate and warn if it expires soon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !identity.Present(dir) {
				return fmt.Errorf("no node certificate in %s; create one with 'drayage tls init' or 'drayage tls add-node'", dir)
			}
			if warning := printNode(cmd.OutOrStdout(), dir); warning != "" {
				return errors.New(warning)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "tls-dir", "/etc/drayage", "the node's TLS dir")
	withEnv(cmd.Flags(), "tls-dir")
	return cmd
}

// printNode prints what a node directory holds and returns an expiry warning, if any.
func printNode(out io.Writer, dir string) string {
	info, err := identity.Describe(dir)
	if err != nil {
		fmt.Fprintf(out, "%s: %v\n", dir, err)
		return err.Error()
	}
	fmt.Fprintf(out, "node %s: %s (names %s; valid until %s)\n", info.Node, dir,
		strings.Join(info.Names, ", "), info.NotAfter.Format(time.DateOnly))
	if info.Warning != "" {
		fmt.Fprintf(out, "WARNING: %s\n", info.Warning)
	}
	return info.Warning
}

func writeGossipKey(dir string, key []byte) error {
	return identity.WriteGossipKey(filepath.Join(dir, identity.GossipKeyFile), key)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

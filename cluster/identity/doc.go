// Package identity is who a node is and how nodes trust each other.
//
// drayage tls init makes a cluster CA and, per node, a certificate whose common name is
// the node's name (also a DNS SAN, with the node's other names and IPs), signed by the
// CA, and a shared gossip key. A node's TLS dir (--tls-dir) holds ca.pem, node.pem,
// node-key.pem and gossip.key.
//
// Every connection between nodes is TLS 1.3 with certificates required on both sides. Both
// sides verify the peer's chain against the cluster CA themselves (so a failure is
// reported as what it is: no certificate, another CA, expired) and then check the name in
// it: a client checks that it reached the node it dialled; a server checks that the
// client is a member it knows. The name a peer is known by is always the one in its
// certificate, never one it sends.
//
// The node's certificate is reloaded when its files change (Watch) or on demand (Reload,
// on SIGHUP): new handshakes use the new certificate, connections already open carry on.
package identity

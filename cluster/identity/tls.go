package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Identity is this node's certificate, the cluster CA and the gossip key, loaded from a
// TLS dir.
type Identity struct {
	name      string
	dir       string
	roots     *x509.CertPool
	caPEM     []byte
	gossipKey []byte
	cert      atomic.Pointer[tls.Certificate]

	mu      sync.Mutex
	modTime time.Time // of the files loaded last
}

// Load reads a node's TLS dir. The certificate must be signed by the CA in the dir and
// name node.
func Load(dir, node string) (*Identity, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("node %q: read cluster CA: %w; create the node's files with 'drayage tls init' and install them in %s", node, err, dir)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("node %q: %s holds no PEM certificate", node, filepath.Join(dir, CAFile))
	}
	key, err := ReadGossipKey(filepath.Join(dir, GossipKeyFile))
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", node, err)
	}
	id := &Identity{name: node, dir: dir, roots: roots, caPEM: caPEM, gossipKey: key}
	if err := id.Reload(); err != nil {
		return nil, err
	}
	return id, nil
}

// Present reports whether dir holds a node certificate (so the node should join a
// cluster).
func Present(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, NodeCertFile))
	return err == nil
}

// Name is the node's name.
func (id *Identity) Name() string { return id.name }

// Files are the paths of the cluster CA, the node certificate and its key, for servers
// that read them themselves (the embedded store).
func (id *Identity) Files() (ca, cert, key string) {
	return filepath.Join(id.dir, CAFile), filepath.Join(id.dir, NodeCertFile), filepath.Join(id.dir, NodeKeyFile)
}

// GossipKey is the key gossip is encrypted with.
func (id *Identity) GossipKey() []byte { return id.gossipKey }

// Certificate is the node's current certificate.
func (id *Identity) Certificate() *x509.Certificate { return id.cert.Load().Leaf }

// Reload reads the node's certificate and key again. A pair that does not load, is not
// signed by the cluster CA or names another node is refused, and the current one kept.
func (id *Identity) Reload() error {
	id.mu.Lock()
	defer id.mu.Unlock()
	certFile, keyFile := filepath.Join(id.dir, NodeCertFile), filepath.Join(id.dir, NodeKeyFile)
	mod := latestModTime(certFile, keyFile)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("node %q: load certificate %s: %w", id.name, certFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("node %q: %s: %w", id.name, certFile, err)
		}
		pair.Leaf = leaf
	}
	if err := id.verify(leaf, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("node %q: certificate %s: %w; issue a new one with 'drayage tls add-node %s --force' and install it",
			id.name, certFile, err, leaf.Subject.CommonName)
	}
	if leaf.Subject.CommonName != id.name {
		return fmt.Errorf("node %q: certificate %s is for node %q; install this node's own files, or run with --name %s",
			id.name, certFile, leaf.Subject.CommonName, leaf.Subject.CommonName)
	}
	id.cert.Store(&pair)
	id.modTime = mod
	return nil
}

// Watch reloads the certificate whenever its files change, until ctx ends.
func (id *Identity) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id.mu.Lock()
		changed := latestModTime(filepath.Join(id.dir, NodeCertFile), filepath.Join(id.dir, NodeKeyFile)).After(id.modTime)
		id.mu.Unlock()
		if !changed {
			continue
		}
		if err := id.Reload(); err != nil {
			log.Error("new node certificate refused; keeping the current one", "err", err)
			continue
		}
		log.Info("reloaded node certificate", "serial", id.Certificate().SerialNumber.Text(16), "expires", id.Certificate().NotAfter)
	}
}

func latestModTime(paths ...string) time.Time {
	var t time.Time
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// ExpiryWarning says how soon the node certificate expires if that is within
// RenewBefore, or "".
func (id *Identity) ExpiryWarning(now time.Time) string {
	return expiryWarning(id.Certificate(), now)
}

func expiryWarning(c *x509.Certificate, now time.Time) string {
	left := c.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return fmt.Sprintf("certificate of %q expired on %s; issue a new one with 'drayage tls add-node %s --force'", c.Subject.CommonName, c.NotAfter.Format(time.DateOnly), c.Subject.CommonName)
	case left < RenewBefore:
		return fmt.Sprintf("certificate of %q expires in %d days (%s); issue a new one with 'drayage tls add-node %s --force'", c.Subject.CommonName, int(left.Hours()/24), c.NotAfter.Format(time.DateOnly), c.Subject.CommonName)
	}
	return ""
}

// Errors of peer verification.
var (
	ErrNoCertificate = errors.New("no certificate presented (a drayage node must present its node certificate)")
	ErrUnknownCA     = errors.New("certificate not signed by this cluster's CA")
	ErrExpired       = errors.New("certificate expired or not yet valid")
	ErrWrongNode     = errors.New("certificate names another node")
	ErrUnknownNode   = errors.New("certificate names a node that is not a member")
)

// verify checks a peer certificate's chain against the cluster CA.
func (id *Identity) verify(leaf *x509.Certificate, intermediates []*x509.Certificate, usage x509.ExtKeyUsage) error {
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{usage}})
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (issuer %q)", ErrUnknownCA, leaf.Issuer.CommonName)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w: valid %s to %s", ErrExpired, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	default:
		return err
	}
}

// peer checks the certificate a peer presented and returns the node name in it.
func (id *Identity) peer(cs tls.ConnectionState, usage x509.ExtKeyUsage) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoCertificate
	}
	leaf := cs.PeerCertificates[0]
	if err := id.verify(leaf, cs.PeerCertificates[1:], usage); err != nil {
		return "", err
	}
	return leaf.Subject.CommonName, nil
}

// PeerName is the node name in the certificate of a connection's peer, as verified.
func PeerName(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

// ServerConfig is the TLS config for accepting connections from other nodes. known, if
// set, says whether a node name is a member; others are refused.
func (id *Identity) ServerConfig(known func(node string) bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Certificates are required; the chain is verified in VerifyConnection so that the
		// error says what was wrong.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return id.cert.Load(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			name, err := id.peer(cs, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			if known != nil && !known(name) {
				return fmt.Errorf("%w: %q", ErrUnknownNode, name)
			}
			return nil
		},
	}
}

// ClientConfig is the TLS config for connecting to node.
func (id *Identity) ClientConfig(node string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The server's chain and name are verified in VerifyConnection, against the
		// cluster CA and the node dialled, rather than against a host name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.cert.Load(), nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			name, err := id.peer(cs, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if name != node {
				return fmt.Errorf("%w: dialled node %q, reached %q", ErrWrongNode, node, name)
			}
			return nil
		},
	}
}

// MemberClientConfig is the TLS config for connecting to whichever node of the cluster
// answers at an address, such as a member of the embedded store, whose client picks
// among them: the server's chain is verified against the cluster CA (any node of the
// cluster may serve), its name is not checked against one node's.
func (id *Identity) MemberClientConfig() *tls.Config {
	cfg := id.ClientConfig("")
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := id.peer(cs, x509.ExtKeyUsageServerAuth)
		return err
	}
	return cfg
}

// ServerHandshake runs the TLS handshake of an accepted connection within timeout. A
// failure is logged with the remote address and what was wrong, and the connection
// closed.
func (id *Identity) ServerHandshake(raw net.Conn, cfg *tls.Config, timeout time.Duration, log *slog.Logger) (*tls.Conn, error) {
	conn := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		why := Explain(err)
		log.Warn("rejected connection from another node", "remote", raw.RemoteAddr().String(), "reason", why)
		_ = raw.Close()
		return nil, fmt.Errorf("handshake with %s: %s", raw.RemoteAddr(), why)
	}
	return conn, nil
}

// Explain turns a TLS handshake error into what went wrong, in words an operator can act
// on.
func Explain(err error) string {
	var rec tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &rec):
		return "not TLS (plaintext?): drayage nodes only speak TLS 1.3 to each other"
	case strings.Contains(msg, "protocol version not supported"), strings.Contains(msg, "unsupported versions"):
		return "TLS version below 1.3 offered: drayage nodes require TLS 1.3"
	case errors.Is(err, ErrNoCertificate), strings.Contains(msg, "didn't provide a certificate"), strings.Contains(msg, "certificate required"):
		return ErrNoCertificate.Error()
	case errors.Is(err, ErrUnknownCA), errors.Is(err, ErrExpired), errors.Is(err, ErrWrongNode), errors.Is(err, ErrUnknownNode):
		return strings.TrimPrefix(msg, "tls: ")
	case errors.Is(err, context.DeadlineExceeded):
		return "handshake timed out"
	}
	return msg
}

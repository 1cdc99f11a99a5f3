package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Lifetimes of what tls init makes.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	NodeLifetime = 2 * 365 * 24 * time.Hour
	// RenewBefore is how long before expiry drayage starts warning.
	RenewBefore = 30 * 24 * time.Hour
)

// File names in a node's TLS dir, and in the CA dir.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	NodeCertFile  = "node.pem"
	NodeKeyFile   = "node-key.pem"
	GossipKeyFile = "gossip.key"
)

// ErrExists is returned when a CA or a node's files would be overwritten.
var ErrExists = errors.New("already exists")

// CA is the cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// NewCA makes a CA for the cluster.
func NewCA(cluster string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "drayage CA " + cluster, Organization: []string{"drayage"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pemBlock("CERTIFICATE", der)}, nil
}

// LoadCA reads a CA written by Save.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", filepath.Join(dir, CAFile), err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("CA key %s: no PEM block", filepath.Join(dir, CAKeyFile))
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

// Save writes the CA's certificate and key into dir (0600), refusing to overwrite a CA.
func (ca *CA) Save(dir string) error {
	key, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	return writeNew(dir, map[string][]byte{CAFile: ca.PEM, CAKeyFile: pemBlock("EC PRIVATE KEY", key)})
}

// NodeSpec says what a node certificate names.
type NodeSpec struct {
	Name string
	DNS  []string
	IPs  []net.IP
	// NotBefore and NotAfter default to now and now+NodeLifetime.
	NotBefore, NotAfter time.Time
}

// Issue signs a certificate for a node, usable as both TLS server and client. The node
// name is the subject's common name and a DNS name.
func (ca *CA) Issue(spec NodeSpec) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if spec.NotBefore.IsZero() {
		spec.NotBefore = time.Now().Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = time.Now().Add(NodeLifetime)
	}
	if spec.NotAfter.After(ca.Cert.NotAfter) {
		spec.NotAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.Name, Organization: []string{"drayage"}, OrganizationalUnit: []string{"node"}},
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string{spec.Name}, spec.DNS...),
		IPAddresses:  spec.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate for node %q: %w", spec.Name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER), nil
}

// WriteNode writes everything a node's --tls-dir needs into dir: the CA certificate, the
// node's certificate and key, and the gossip key. It refuses to overwrite a node's files.
func (ca *CA) WriteNode(dir string, spec NodeSpec, gossipKey []byte) error {
	cert, key, err := ca.Issue(spec)
	if err != nil {
		return err
	}
	if err := writeNew(dir, map[string][]byte{CAFile: ca.PEM, NodeCertFile: cert, NodeKeyFile: key}); err != nil {
		return err
	}
	return WriteGossipKey(filepath.Join(dir, GossipKeyFile), gossipKey)
}

// NewGossipKey makes a 32-byte key for AES-256-GCM gossip encryption.
func NewGossipKey() ([]byte, error) {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	return k, err
}

// ReadGossipKey reads a gossip key file (base64).
func ReadGossipKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
		return nil, fmt.Errorf("gossip key %s: want the base64 of 16, 24 or 32 bytes", path)
	}
	return k, nil
}

// writeNew writes files into dir with mode 0600, failing with ErrExists before writing
// anything if one of them is already there.
func writeNew(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, name), ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func parseCert(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// WriteGossipKey writes a gossip key file (base64, 0600), refusing to overwrite one.
func WriteGossipKey(path string, key []byte) error {
	return writeNew(filepath.Dir(path), map[string][]byte{
		filepath.Base(path): []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
	})
}

// NodeInfo describes the certificate in a node's TLS dir.
type NodeInfo struct {
	Node     string
	Names    []string
	NotAfter time.Time
	Warning  string
}

// Describe reads the certificate in a node's TLS dir.
func Describe(dir string) (NodeInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, NodeCertFile))
	if err != nil {
		return NodeInfo{}, err
	}
	c, err := parseCert(b)
	if err != nil {
		return NodeInfo{}, fmt.Errorf("%s: %w", filepath.Join(dir, NodeCertFile), err)
	}
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return NodeInfo{Node: c.Subject.CommonName, Names: names, NotAfter: c.NotAfter, Warning: expiryWarning(c, time.Now())}, nil
}

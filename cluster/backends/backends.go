// Package backends opens the cluster.Store named by a --store URL:
//
//	embedded                  an etcd server inside the daemon (default)
//	etcd://HOST:PORT[,...]    an etcd cluster
//	consul://HOST:PORT        a Consul agent or server
//
// Client TLS (CA, certificate, key) applies to etcd and Consul; etcd takes a username and
// password, Consul an ACL token.
package backends

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/drayage/drayage/cluster"
	"github.com/drayage/drayage/cluster/consulstore"
	"github.com/drayage/drayage/cluster/embedded"
	"github.com/drayage/drayage/cluster/etcdstore"
)

// Kinds of store.
const (
	KindEmbedded = "embedded"
	KindEtcd     = "etcd"
	KindConsul   = "consul"
)

// Config says which store to open and how.
type Config struct {
	// URL is the --store value.
	URL string
	// Prefix is the key prefix drayage uses; the connection check reads a key under it, so
	// credentials limited to the prefix pass (default "drayage/").
	Prefix string
	// CAFile, CertFile and KeyFile set up client TLS to etcd or Consul.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to etcd.
	Username, Password string
	// Token is the Consul ACL token.
	Token string
	// Embedded is used for the embedded store.
	Embedded embedded.Options
}

// Spec is a parsed --store URL.
type Spec struct {
	Kind      string
	Endpoints []string // host:port, for etcd and consul
}

// Parse checks a --store URL.
func Parse(raw string) (Spec, error) {
	const help = "use embedded, etcd://HOST:PORT[,HOST:PORT...] or consul://HOST:PORT"
	if raw == "" || raw == KindEmbedded {
		return Spec{Kind: KindEmbedded}, nil
	}
	shown := Redact(raw)
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Spec{}, fmt.Errorf("store %q: no scheme; %s", shown, help)
	}
	if scheme != KindEtcd && scheme != KindConsul {
		return Spec{}, fmt.Errorf("store %q: unknown kind %q; %s", shown, scheme, help)
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?@#") {
		return Spec{}, fmt.Errorf("store %q: only host:port addresses are allowed after %s:// (credentials and TLS files have settings of their own); %s", shown, scheme, help)
	}
	var endpoints []string
	for _, hp := range strings.Split(rest, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" || port == "" {
			return Spec{}, fmt.Errorf("store %q: %q is not HOST:PORT; %s", shown, hp, help)
		}
		endpoints = append(endpoints, hp)
	}
	if scheme == KindConsul && len(endpoints) != 1 {
		return Spec{}, fmt.Errorf("store %q: give one Consul address (the local agent); %s", shown, help)
	}
	return Spec{Kind: scheme, Endpoints: endpoints}, nil
}

// Redact hides what a store URL may carry that is secret, for messages: user info
// ("etcd://user:pass@h:p", "consul://TOKEN@h:p") and a query or fragment ("?token=...").
// drayage refuses such URLs (credentials have settings of their own), but its message
// must not repeat the secret.
func Redact(raw string) string {
	prefix, s := "", raw
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		prefix, s = scheme+"://", rest
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + s[i:i+1] + "xxxxx"
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		s = "xxxxx" + s[at:]
	}
	return prefix + s
}

// Open connects to the store the config names (starting it, for embedded).
func Open(ctx context.Context, cfg Config) (cluster.Store, error) {
	spec, err := Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = cluster.DefaultPrefix
	}
	check := cfg.Prefix + ".check"
	switch spec.Kind {
	case KindEtcd:
		return etcdstore.Open(ctx, etcdstore.Options{
			Endpoints: spec.Endpoints, TLS: tlsConfig, Username: cfg.Username, Password: cfg.Password, CheckKey: check,
		})
	case KindConsul:
		if cfg.Username != "" || cfg.Password != "" {
			return nil, errors.New("store: Consul takes an ACL token, not a username and password")
		}
		return consulstore.Open(ctx, consulstore.Options{Address: spec.Endpoints[0], TLS: tlsConfig, Token: cfg.Token, CheckKey: check})
	default:
		if tlsConfig != nil || cfg.Token != "" || cfg.Username != "" {
			return nil, errors.New("store: TLS files, tokens and credentials are for etcd:// and consul:// stores, not the embedded one")
		}
		return embedded.Start(ctx, cfg.Embedded)
	}
}

// clientTLS builds the client TLS config from the files, or nil if none are set.
func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" && cfg.KeyFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store CA %s: no PEM certificates in it", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("store client certificate: give both the certificate and the key file")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

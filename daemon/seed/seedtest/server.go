// Package seedtest serves archives over real HTTPS for the tests of seeding: a server
// that honours or ignores Range, and can cut or pace a download; and a TCP proxy that cuts
// another server's answer (an S3 server's).
package seedtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves archives by path over HTTPS (or HTTP), with a test CA.
type Server struct {
	*httptest.Server
	client *http.Client
	// Rate, if set, bounds each answer's content to that many bytes a second.
	Rate atomic.Int64
	// IgnoreRange has the server answer every request whole, as some servers do.
	IgnoreRange atomic.Bool

	mu    sync.Mutex
	files map[string][]byte
	etags map[string]string
	cut   map[string]int64 // path -> the byte after which the next answer breaks off
	// Requests counts the requests, and Sent the content bytes sent, by path.
	requests map[string]int
	sent     map[string]int64
	ranges   map[string][]string
}

// Cert is a server certificate for one IP address and the CA that signed it.
type Cert struct {
	TLS tls.Certificate
	// CA is the CA's PEM, for a daemon's DRAYAGE_SEED_CA.
	CA   []byte
	pool *x509.CertPool
}

// Start serves on addr (an IP and port; port 0 picks one) over HTTPS with cert, or over
// plain HTTP if cert is nil. Close stops it.
func Start(addr string, cert *Cert) (*Server, error) {
	s := newServer()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Listener = l
	if cert == nil {
		s.Start()
		s.client = &http.Client{}
		return s, nil
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}
	s.StartTLS()
	s.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.pool, MinVersion: tls.VersionTLS12}}}
	return s, nil
}

// Client is an HTTP client that trusts the server.
func (s *Server) Client() *http.Client { return s.client }

// NewCert makes a CA and a server certificate it signs for ip.
func NewCert(ip string) (*Cert, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seedtest CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &Cert{TLS: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: pool}, nil
}

func newServer() *Server {
	return &Server{files: map[string][]byte{}, etags: map[string]string{}, cut: map[string]int64{},
		requests: map[string]int{}, sent: map[string]int64{}, ranges: map[string][]string{}}
}

// Put serves b at path (starting with "/") under a new ETag.
func (s *Server) Put(path string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = b
	s.etags[path] = `"` + time.Now().Format("150405.000000000") + `"`
}

// CutAfter has the next answer for path break off after n content bytes.
func (s *Server) CutAfter(path string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut[path] = n
}

// Requests is how many requests path had; Sent how many of its content bytes went out;
// Ranges the Range headers it was asked with.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// Sent is how many content bytes of path the server sent.
func (s *Server) Sent(path string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[path]
}

// Ranges are the Range headers path was asked with ("" for none).
func (s *Server) Ranges(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges[path]...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	s.mu.Lock()
	b, ok := s.files[p]
	etag := s.etags[p]
	cut, cutting := s.cut[p]
	delete(s.cut, p)
	s.requests[p]++
	s.ranges[p] = append(s.ranges[p], r.Header.Get("Range"))
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if s.IgnoreRange.Load() {
		r.Header.Del("Range")
	}
	w.Header().Set("ETag", etag)
	cw := &countingWriter{ResponseWriter: w, limit: -1, rate: s.Rate.Load(), start: time.Now(), done: r.Context().Done(),
		add: func(n int64) { s.mu.Lock(); s.sent[p] += n; s.mu.Unlock() }}
	if cutting {
		cw.limit = cut
	}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
	if cw.broken {
		panic(http.ErrAbortHandler) // the connection is dropped mid-body
	}
}

// countingWriter counts content bytes, and breaks off after limit of them (-1: never);
// with rate set, it writes no faster than that many bytes a second.
type countingWriter struct {
	http.ResponseWriter
	n, limit int64
	broken   bool
	rate     int64
	start    time.Time
	done     <-chan struct{} // the request's end
	add      func(n int64)   // counts n bytes sent, as they go
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.rate > 0 {
		return c.paced(p)
	}
	return c.write(p)
}

// paced writes p in pieces, each once the rate allows it.
func (c *countingWriter) paced(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		piece := p[:min(len(p), 64<<10)]
		if due := c.start.Add(time.Duration(float64(c.n) / float64(c.rate) * float64(time.Second))); time.Until(due) > 0 {
			select {
			case <-time.After(time.Until(due)):
			case <-c.done: // the client went away
				return written, http.ErrAbortHandler
			}
		}
		n, err := c.write(piece)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *countingWriter) write(p []byte) (int, error) {
	if c.limit >= 0 && c.n+int64(len(p)) > c.limit {
		p = p[:c.limit-c.n]
		c.broken = true
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	c.add(int64(n))
	if c.broken {
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		return n, http.ErrAbortHandler
	}
	return n, err
}

// Proxy forwards TCP connections to a server, and can break off a connection's answer
// after some bytes: a cut on the way, for servers (an S3 server) that can't cut
// their own answers.
type Proxy struct {
	Addr string
	l    net.Listener
	mu   sync.Mutex
	cut  int64 // the first connection whose answer passes cut bytes breaks off there (-1: none)
	// Sent counts the bytes of answers forwarded.
	sent atomic.Int64
}

// StartProxy listens on addr and forwards to target.
func StartProxy(addr, target string) (*Proxy, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: l.Addr().String(), l: l, cut: -1}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c, target)
		}
	}()
	return p, nil
}

// CutAfter has the first connection whose answer passes n bytes break off there.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = n
}

// Sent is how many bytes of answers the proxy forwarded.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Close stops listening; connections open end with their ends.
func (p *Proxy) Close() error { return p.l.Close() }

func (p *Proxy) forward(c net.Conn, target string) {
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { _, _ = io.Copy(s, c) }()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := s.Read(buf)
		if k > 0 {
			if cut := p.take(n + int64(k)); cut >= 0 {
				k = int(max(0, cut-n))
				_, _ = c.Write(buf[:k])
				p.sent.Add(int64(k))
				return // the connection breaks off
			}
			if _, werr := c.Write(buf[:k]); werr != nil {
				return
			}
			n += int64(k)
			p.sent.Add(int64(k))
		}
		if err != nil {
			return
		}
	}
}

// take disarms the cut and returns it if a connection's answer reaching total bytes
// crosses it; else -1.
func (p *Proxy) take(total int64) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut < 0 || total <= p.cut {
		return -1
	}
	cut := p.cut
	p.cut = -1
	return cut
}

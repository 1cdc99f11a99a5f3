package transfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/drayage/drayage/cluster/identity"
)

func (s *Server) maxConns() int {
	if s.MaxConns <= 0 {
		return DefaultMaxConns
	}
	return s.MaxConns
}

// ServeData accepts data streams on l until l or the Server is closed; after Close it
// returns net.ErrClosed. Each stream opens with the transfer ID it serves; only the
// transfer's receiver may open it. Connections beyond MaxConns are closed at once.
func (s *Server) ServeData(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return net.ErrClosed
	}
	s.listeners[l] = true
	s.work.Add(1)
	s.mu.Unlock()
	defer s.work.Done()
	cfg := s.id.ServerConfig(nil)
	for {
		raw, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			delete(s.listeners, l)
			if s.closed {
				err = net.ErrClosed
			}
			s.mu.Unlock()
			return err
		}
		s.mu.Lock()
		closed, full := s.closed, s.conns >= s.maxConns()
		if !closed && !full {
			s.conns++
			s.work.Add(1)
		}
		s.mu.Unlock()
		switch {
		case closed: // l is closing too
			_ = raw.Close()
			continue
		case full:
			s.log.Warn("closed a data connection: at the limit of data connections served at once", "remote", raw.RemoteAddr().String(), "limit", s.maxConns())
			_ = raw.Close()
			continue
		}
		go func() {
			defer s.work.Done()
			defer func() {
				s.mu.Lock()
				s.conns--
				s.mu.Unlock()
			}()
			s.serveStream(raw, cfg)
		}()
	}
}

// serveStream serves one data connection, until it is done or the Server closes.
func (s *Server) serveStream(raw net.Conn, cfg *tls.Config) {
	defer closeOnDone(s.ctx, raw)()
	conn, err := s.id.ServerHandshake(raw, cfg, 10*time.Second, s.log)
	if err != nil {
		return
	}
	defer conn.Close()
	node := identity.PeerName(conn.ConnectionState())
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	id, err := readHello(conn)
	if err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	t, err := s.lookup(id, node)
	if err == nil {
		// The claim the transfer was opened under is checked again for each stream: a
		// node that lost the volume since (its lease lapsed and a replica was promoted)
		// sends no more of it.
		actx, cancel := context.WithTimeout(s.ctx, authorizeTimeout)
		_, err = s.authorize(actx, t.volume, node, t.epoch)
		cancel()
	}
	if err != nil {
		s.log.Warn("refused a data stream", "volume", volumeOf(t), "peer", node, "transfer", id, "err", err)
		_ = newFrameWriter(conn).Write(frameError, []byte(err.Error()))
		return
	}
	s.mu.Lock()
	refusal := ""
	switch {
	case s.transfers[id] != t:
		refusal = "data stream opened after the transfer ended"
	case !t.source.Wanted():
		refusal = "data stream opened before Want"
	case t.open >= maxStreams:
		refusal = fmt.Sprintf("more than %d data streams for one transfer", maxStreams)
	default:
		t.streams.Add(1)
		t.open++
		t.expiry.Stop()
	}
	s.mu.Unlock()
	if refusal != "" {
		_ = newFrameWriter(conn).Write(frameError, []byte(refusal))
		return
	}
	defer func() {
		s.mu.Lock()
		// The expiry starts again only for a transfer still served: not one that Finish,
		// or Close, has ended meanwhile.
		if t.open--; t.open == 0 && s.transfers[id] == t {
			t.expiry.Reset(s.staleAfter())
		}
		s.mu.Unlock()
		t.streams.Done()
	}()
	ctx := s.ctx
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	w, flush, err := t.wire.senderWriter(ctx, idleConn{Conn: conn, idle: idle}, t.limit)
	if err != nil {
		return
	}
	if err := t.source.Send(ctx, w); err != nil && ctx.Err() == nil { // not ended by Close
		s.log.Warn("data stream failed", "volume", t.volume, "peer", node, "transfer", id, "err", err)
	}
	_ = flush()
}

// authorizeTimeout bounds the check of a data stream's claim.
const authorizeTimeout = 10 * time.Second

// volumeOf names the volume of a transfer, if there is one.
func volumeOf(t *outgoing) string {
	if t == nil {
		return ""
	}
	return t.volume
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// simNet is memberlist's in-memory network (MockNetwork) with what a simulation needs
// beside it: a node can be cut off, as a crashed host is (its packets vanish, its
// streams are refused), and every byte a node sends is counted.
//
// Packets travel as UDP does: MockTransport hands a packet over an unbuffered channel,
// so its sender waits until the receiver reads it, and two nodes that answer each
// other's pings at once wait for each other for good (at 1,000 nodes, in seconds). Here
// a packet goes into its receiver's queue of packetQueue, or is dropped if that is full.
// Streams are MockNetwork's.
//
// MockNetwork's maps, and this one's, are not safe to change while nodes talk, so every
// transport is made before the first node starts.
type simNet struct {
	mock   memberlist.MockNetwork
	byAddr map[string]*simTransport
	byName map[string]*simTransport
	mu     sync.RWMutex
	down   map[string]bool // by name and by address
}

// packetQueue is how many packets a node's queue holds, as a socket's receive buffer.
const packetQueue = 4096

func newSimNet() *simNet {
	return &simNet{down: map[string]bool{}, byAddr: map[string]*simTransport{}, byName: map[string]*simTransport{}}
}

// transport makes the transport of the node called name.
func (n *simNet) transport(name string) *simTransport {
	t := &simTransport{net: n, mock: n.mock.NewTransport(name), name: name, streams: make(chan net.Conn),
		packets: make(chan *memberlist.Packet, packetQueue), stop: make(chan struct{})}
	t.addr = t.mock.FinalAdvertiseAddr
	ip, port, _ := t.addr("", 0)
	t.from = &net.UDPAddr{IP: ip, Port: port}
	n.byAddr[t.from.String()], n.byName[name] = t, t
	go t.accept()
	return t
}

// cut makes the node unreachable, and its own packets go nowhere.
func (n *simNet) cut(t *simTransport) {
	ip, port, _ := t.mock.FinalAdvertiseAddr("", 0)
	n.mu.Lock()
	n.down[t.name] = true
	n.down[net.JoinHostPort(ip.String(), strconv.Itoa(port))] = true
	n.mu.Unlock()
}

func (n *simNet) isDown(a memberlist.Address) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.down[a.Name] || n.down[a.Addr]
}

var errRefused = errors.New("connection refused (simulated crash)")

// simTransport is one node's transport on a simNet.
type simTransport struct {
	net     *simNet
	mock    *memberlist.MockTransport
	name    string
	addr    func(string, int) (net.IP, int, error)
	from    net.Addr
	sent    atomic.Int64
	dropped atomic.Int64
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{}
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*simTransport)(nil)

func (t *simTransport) self() memberlist.Address { return memberlist.Address{Name: t.name} }

func (t *simTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.addr(ip, port)
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress queues a packet at its receiver, or drops it, as UDP does, if either end
// is cut off or the receiver's queue is full.
func (t *simTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.net.isDown(t.self()) || t.net.isDown(a) {
		return now, nil
	}
	dest := t.net.byName[a.Name]
	if dest == nil {
		dest = t.net.byAddr[a.Addr]
	}
	if dest == nil {
		return now, fmt.Errorf("no route to %s", a)
	}
	t.sent.Add(int64(len(b)))
	select {
	case dest.packets <- &memberlist.Packet{Buf: bytes.Clone(b), From: t.from, Timestamp: now}:
	default:
		dest.dropped.Add(1)
	}
	return now, nil
}

func (t *simTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// IngestPacket queues a packet read from conn as if it had arrived (MockTransport's
// would go to its own queue, which nothing reads here).
func (t *simTransport) IngestPacket(conn net.Conn, addr net.Addr, now time.Time, shouldClose bool) error {
	if shouldClose {
		defer conn.Close()
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return fmt.Errorf("read packet: %w", err)
	}
	if len(b) == 0 {
		return fmt.Errorf("packet too short (0 bytes) from %s", addr)
	}
	t.packets <- &memberlist.Packet{Buf: b, From: addr, Timestamp: now}
	return nil
}

func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *simTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.net.isDown(t.self()) || t.net.isDown(a) {
		return nil, errRefused
	}
	c, err := t.mock.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, sent: &t.sent}, nil
}

func (t *simTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *simTransport) IngestStream(conn net.Conn) error { return t.mock.IngestStream(conn) }

func (t *simTransport) Shutdown() error {
	t.once.Do(func() { close(t.stop) })
	return nil
}

// accept hands memberlist the streams dialled to this node, counting what it writes on
// them.
func (t *simTransport) accept() {
	for {
		select {
		case c := <-t.mock.StreamCh():
			select {
			case t.streams <- countingConn{Conn: c, sent: &t.sent}:
			case <-t.stop:
				_ = c.Close()
				return
			}
		case <-t.stop:
			return
		}
	}
}

type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}

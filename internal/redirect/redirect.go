// Package redirect captures a pod's TCP inside the pod's own network
// namespace, as Istio ambient's in-pod mode does: nftables rules there send
// the pod's outbound connections, and the connections it receives, to
// listeners that the node agent opens in that same namespace. The agent
// learns where each connection was headed from its original destination
// (SO_ORIGINAL_DST), and knows which pod it came from by the namespace its
// listener sits in, never by guessing from an address.
//
// The rules live in a table of their own, TableName, which Install
// replaces in one atomic batch and Remove deletes. They leave alone:
//
//   - the agent's own connections, made from sockets that carry Mark
//     (SO_MARK, which needs CAP_NET_ADMIN), so that what the agent sends on
//     the pod's behalf is not captured again;
//   - loopback, inside the pod;
//   - inbound connections to the tunnel's port (HBONE, 15008), which the
//     agent's tunnel endpoint answers itself;
//   - inbound connections from ExcludeSources (the node's address that
//     kubelet's probes come from).
//
// A process of the pod with CAP_NET_ADMIN can delete the table; the
// posture rules forbid that capability in enrolled namespaces.
package redirect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family ip) that holds the rules.
const TableName = "kzero"

// The ports the agent listens on inside each pod, and its mark.
const (
	// OutboundPort receives the pod's outbound TCP.
	OutboundPort = 15001
	// InboundPort receives the TCP sent to the pod (other than to
	// TunnelPort).
	InboundPort = 15006
	// TunnelPort is HBONE's, which the tunnel endpoint answers unredirected.
	TunnelPort = 15008
	// Mark is the SO_MARK of the agent's own sockets in a pod's namespace.
	Mark = 0x539
)

// Config says what Install captures; its zero value is the defaults above.
type Config struct {
	// OutboundPort, InboundPort, TunnelPort and Mark: 0 means the
	// package's constant.
	OutboundPort, InboundPort, TunnelPort uint16
	Mark                                  uint32
	// ExcludeSources are addresses whose inbound connections are not
	// captured: the node's, where kubelet's probes come from.
	ExcludeSources []netip.Addr
}

func (c Config) withDefaults() Config {
	if c.OutboundPort == 0 {
		c.OutboundPort = OutboundPort
	}
	if c.InboundPort == 0 {
		c.InboundPort = InboundPort
	}
	if c.TunnelPort == 0 {
		c.TunnelPort = TunnelPort
	}
	if c.Mark == 0 {
		c.Mark = Mark
	}
	return c
}

// Install sets the capture rules in the network namespace netns (a file
// such as /proc/<pid>/ns/net or /var/run/netns/<name>), replacing any that
// an earlier Install left, in one batch: the namespace never has half of
// them.
func Install(netns string, cfg Config) error {
	cfg = cfg.withDefaults()
	for _, a := range cfg.ExcludeSources {
		if !a.Is4() {
			return fmt.Errorf("redirect: excluded source %s: only IPv4 addresses are captured", a)
		}
	}
	return inNamespace(netns, func(c *nftables.Conn) error {
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
		// Add, delete, add: the table is replaced whether or not it
		// was there, in the same batch.
		c.AddTable(table)
		c.DelTable(table)
		c.AddTable(table)
		out := c.AddChain(&nftables.Chain{
			Name: "output", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
		})
		in := c.AddChain(&nftables.Chain{
			Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
		})
		for _, r := range [][]expr.Any{
			markIs(cfg.Mark, ret()),
			ifnameIs(expr.MetaKeyOIFNAME, "lo", ret()),
			tcpRedirect(cfg.OutboundPort),
		} {
			c.AddRule(&nftables.Rule{Table: table, Chain: out, Exprs: r})
		}
		inRules := [][]expr.Any{
			ifnameIs(expr.MetaKeyIIFNAME, "lo", ret()),
			tcpDportIs(cfg.TunnelPort, ret()),
		}
		for _, a := range cfg.ExcludeSources {
			inRules = append(inRules, saddrIs(a, ret()))
		}
		inRules = append(inRules, tcpRedirect(cfg.InboundPort))
		for _, r := range inRules {
			c.AddRule(&nftables.Rule{Table: table, Chain: in, Exprs: r})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("redirect: install the rules in %s: %w", netns, err)
		}
		return nil
	})
}

// Remove deletes the capture rules from netns; a namespace without them is
// left as it is.
func Remove(netns string) error {
	return inNamespace(netns, func(c *nftables.Conn) error {
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
		c.AddTable(table) // so that the delete cannot fail for its absence
		c.DelTable(table)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("redirect: remove the rules from %s: %w", netns, err)
		}
		return nil
	})
}

// Installed reports whether netns holds the capture table.
func Installed(netns string) (bool, error) {
	var found bool
	err := inNamespace(netns, func(c *nftables.Conn) error {
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("redirect: list the tables of %s: %w", netns, err)
		}
		for _, t := range tables {
			if t.Name == TableName {
				found = true
			}
		}
		return nil
	})
	return found, err
}

// inNamespace runs f with a netlink connection into the namespace netns.
func inNamespace(netns string, f func(*nftables.Conn) error) error {
	ns, err := os.Open(netns) //nolint:gosec // the namespace's file is the caller's to name: a pod's, found by the agent
	if err != nil {
		return fmt.Errorf("redirect: open the network namespace: %w", err)
	}
	defer func() { _ = ns.Close() }()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return fmt.Errorf("redirect: netlink into %s: %w", netns, err)
	}
	return f(c)
}

// The expressions, each ending in its verdict or action.

func ret() expr.Any { return &expr.Verdict{Kind: expr.VerdictReturn} }

func markIs(mark uint32, then expr.Any) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		then,
	}
}

func ifnameIs(key expr.MetaKey, name string, then expr.Any) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
		then,
	}
}

func isTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

func tcpDportIs(port uint16, then expr.Any) []expr.Any {
	return append(isTCP(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		then,
	)
}

func saddrIs(a netip.Addr, then expr.Any) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]},
		then,
	}
}

func tcpRedirect(port uint16) []expr.Any {
	return append(isTCP(),
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	)
}

// errNotIPv4 is OriginalDst's answer for a socket it cannot read.
var errNotIPv4 = errors.New("redirect: no IPv4 original destination on this connection")

// parseSockaddrIn reads a struct sockaddr_in as SO_ORIGINAL_DST returns it.
func parseSockaddrIn(b []byte) (netip.AddrPort, error) {
	if len(b) < 8 || binary.NativeEndian.Uint16(b[0:2]) != unix.AF_INET {
		return netip.AddrPort{}, errNotIPv4
	}
	port := binary.BigEndian.Uint16(b[2:4])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
}

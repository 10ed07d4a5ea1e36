package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// CaptureOptions says where a capture listens and what it keeps.
type CaptureOptions struct {
	// Node captures in that node's network namespace, on Interface. Empty:
	// on the machine's bridge, the cluster network, which every packet
	// between two nodes (and between a node and the machine) crosses.
	Node string
	// Interface is the node's interface to capture on; empty: all of them
	// ("any"). Ignored on the machine.
	Interface string
	// Filter is a pcap filter expression, such as "tcp port 8080"; empty:
	// every packet.
	Filter string
	// File is the pcap file to write; it is created or truncated.
	File string
}

// Capture is tcpdump writing what it captures to a pcap file. End it with
// Stop.
type Capture struct {
	// File is the pcap file (CaptureOptions.File).
	File string

	cmd    *exec.Cmd
	out    *os.File
	done   chan error
	stderr *strings.Builder
	stop   sync.Once
	err    error
}

// StartCapture starts tcpdump as opts says and returns once it listens, so
// that what the test sends next is in the file. tcpdump comes from Debian's
// package, which hack/cluster/install-deps.sh installs.
func (c *Cluster) StartCapture(ctx context.Context, opts CaptureOptions) (*Capture, error) {
	if opts.File == "" {
		return nil, errors.New("cluster: StartCapture: no File to write the packets to")
	}
	iface := c.Layout.Bridge
	if opts.Node != "" {
		iface = opts.Interface
		if iface == "" {
			iface = "any"
		}
	}
	// --immediate-mode: every packet handed to tcpdump as it comes (not a
	// buffer's worth a second later, which a Stop right after the traffic
	// would lose); -U: every packet written as it comes; -Z root: tcpdump keeps root,
	// so that nothing about the file's owner differs between runs; -y
	// LINUX_SLL on "any", a link type that gopacket reads.
	args := []string{"tcpdump", "-n", "--immediate-mode", "-U", "-Z", "root", "-s", "0", "-i", iface, "-w", "-"}
	if iface == "any" {
		args = append(args, "-y", "LINUX_SLL")
	}
	if opts.Filter != "" {
		args = append(args, opts.Filter)
	}
	var cmd *exec.Cmd
	if opts.Node != "" {
		var err error
		if cmd, err = c.NodeCommand(ctx, opts.Node, args...); err != nil {
			return nil, err
		}
	} else {
		cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	}
	out, err := os.Create(opts.File)
	if err != nil {
		return nil, fmt.Errorf("cluster: capture: %w", err)
	}
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("cluster: capture: %w", err)
	}
	// SIGINT makes tcpdump flush and exit; the context's end kills it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("cluster: capture: start tcpdump: %w (is it installed? hack/cluster/install-deps.sh installs it)", err)
	}
	cp := &Capture{File: opts.File, cmd: cmd, out: out, done: make(chan error, 1), stderr: &strings.Builder{}}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			cp.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(listening)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		cp.done <- cmd.Wait()
	}()
	select {
	case <-listening:
		return cp, nil
	case err := <-cp.done:
		cp.done <- err // for Stop
		_ = cp.Stop()
		return nil, fmt.Errorf("cluster: tcpdump %s ended before it listened: %w: %s", strings.Join(args[1:], " "), err, cp.stderr.String())
	case <-time.After(30 * time.Second):
		_ = cp.Stop()
		return nil, fmt.Errorf("cluster: tcpdump %s did not listen in 30s: %s", strings.Join(args[1:], " "), cp.stderr.String())
	}
}

// Stop ends tcpdump (SIGINT, so that it flushes; it is killed if it does
// not end in 5 s) and closes the file. Stopping twice does no harm.
func (cp *Capture) Stop() error {
	cp.stop.Do(func() {
		_ = cp.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-cp.done:
		case <-time.After(5 * time.Second):
			_ = cp.cmd.Process.Kill()
			<-cp.done
		}
		cp.err = cp.out.Close()
	})
	return cp.err
}

// Packet is one IPv4 packet of a capture.
type Packet struct {
	// Time is when it was captured.
	Time time.Time
	// Proto is "tcp", "udp", "icmp" or the IP protocol's number.
	Proto string
	// Src and Dst are its addresses, with the ports for TCP and UDP.
	Src, Dst netip.AddrPort
	// Flags are a TCP segment's flags, such as "SYN" or "ACK PSH".
	Flags string
	// Payload is what TCP or UDP carries.
	Payload []byte
}

// ReadPackets reads the IPv4 packets of a pcap file, in order; other
// packets (ARP, IPv6) are skipped.
func ReadPackets(file string) ([]Packet, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", file, err)
	}
	var out []Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, nil // a capture stopped mid-packet ends there
		}
		if err != nil {
			return out, fmt.Errorf("cluster: %s: %w", file, err)
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		p := Packet{Time: ci.Timestamp, Proto: fmt.Sprint(int(ip.Protocol)), Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0)}
		switch l := pkt.TransportLayer().(type) {
		case *layers.TCP:
			p.Proto = "tcp"
			p.Src, p.Dst = netip.AddrPortFrom(src, uint16(l.SrcPort)), netip.AddrPortFrom(dst, uint16(l.DstPort))
			p.Flags = tcpFlags(l)
			p.Payload = l.Payload
		case *layers.UDP:
			p.Proto = "udp"
			p.Src, p.Dst = netip.AddrPortFrom(src, uint16(l.SrcPort)), netip.AddrPortFrom(dst, uint16(l.DstPort))
			p.Payload = l.Payload
		default:
			if ip.Protocol == layers.IPProtocolICMPv4 {
				p.Proto = "icmp"
			}
		}
		out = append(out, p)
	}
}

func tcpFlags(l *layers.TCP) string {
	var f []string
	for _, x := range []struct {
		set  bool
		name string
	}{{l.SYN, "SYN"}, {l.ACK, "ACK"}, {l.PSH, "PSH"}, {l.FIN, "FIN"}, {l.RST, "RST"}} {
		if x.set {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, " ")
}

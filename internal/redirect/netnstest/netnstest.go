// Package netnstest makes network namespaces for tests, so that they send
// traffic only where they made it: two namespaces joined by a veth pair,
// removed when the test ends. It needs root; without root the test is
// skipped with the reason.
package netnstest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// NS is one namespace of a pair.
type NS struct {
	// Path is its file, for setns: /var/run/netns/<name>.
	Path string
	// Name is its name for `ip netns`.
	Name string
	// Dev is its end of the veth pair.
	Dev string
	// IP is its address on the veth.
	IP netip.Addr
}

// seq counts the pairs of this process.
var seq struct {
	sync.Mutex
	n byte
}

// Pair makes two namespaces joined by a veth pair, with addresses
// 10.213.<n>.1 and .2 (n counts the pairs of this process), loopback up.
func Pair(t testing.TB) (NS, NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes network namespaces (CI runs as root)")
	}
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	if n == 0 {
		t.Fatal("netnstest: more than 255 pairs in one process")
	}
	base := fmt.Sprintf("kzt%d-%d", os.Getpid()%100000, n)
	a := NS{Name: base + "a", Dev: base + "x", IP: netip.AddrFrom4([4]byte{10, 213, n, 1})}
	b := NS{Name: base + "b", Dev: base + "y", IP: netip.AddrFrom4([4]byte{10, 213, n, 2})}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil { //nolint:gosec // the test's own arguments
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []*NS{&a, &b} {
		run("netns", "add", ns.Name)
		name := ns.Name
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() }) //nolint:gosec // the namespace this test made
		ns.Path = "/var/run/netns/" + ns.Name
	}
	run("link", "add", a.Dev, "netns", a.Name, "type", "veth", "peer", "name", b.Dev, "netns", b.Name)
	for _, ns := range []NS{a, b} {
		run("-n", ns.Name, "addr", "add", ns.IP.String()+"/24", "dev", ns.Dev)
		run("-n", ns.Name, "link", "set", "lo", "up")
		run("-n", ns.Name, "link", "set", ns.Dev, "up")
	}
	return a, b
}

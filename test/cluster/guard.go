package cluster

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// probe is a route look-up that CheckContained makes: it asks the kernel
// where a packet would go and sends nothing. The far address is from a
// documentation range (RFC 5737) and is never contacted.
type probe struct {
	what, dst, from, iif string
	want                 func(route string) bool
	fix                  string
}

// outside is the address that stands for anything beyond the machine.
const outside = "198.51.100.7"

func routesTo(dev string) func(string) bool {
	return func(r string) bool { return routeDev(r) == dev }
}

func unreachable(r string) bool { return strings.HasPrefix(r, "unreachable") }

// hostProbes are the look-ups made on the machine.
func (c *Cluster) hostProbes() []probe {
	l := c.Layout
	p := fmt.Sprintf("10.%d", 244+l.Index)
	probes := []probe{
		{
			what: "a Service address", dst: strings.TrimSuffix(l.ServiceCIDR, "0/24") + "200",
			want: routesTo(l.Sink), fix: "the Service range must be routed to " + l.Sink,
		},
		{
			what: "an address near the pod ranges", dst: p + ".200.200",
			want: routesTo(l.Sink), fix: "the guard range " + l.GuardCIDR + " must be routed to " + l.Sink,
		},
		{
			// Unreachable by table RouteTable, or because the machine
			// does not forward at all: the nodes reach each other on
			// the bridge, not through the machine.
			what: "a packet from a pod to an outside address", dst: outside, from: p + ".1.200", iif: l.Bridge,
			want: unreachable,
			fix:  fmt.Sprintf("packets from pods must be routed by table %d, which has no default route", l.RouteTable),
		},
	}
	for i := range c.Nodes {
		pod := strings.TrimSuffix(l.NodePodCIDR(i+1), "0/24")
		probes = append(probes, probe{
			what: "a pod address of node " + c.Nodes[i].Name, dst: pod + "200",
			want: routesTo(l.Bridge), fix: "node " + c.Nodes[i].Name + "'s pod range must be routed to it on " + l.Bridge,
		})
	}
	return probes
}

// nodeProbes are the look-ups made in node i's network namespace.
func (c *Cluster) nodeProbes(i int) []probe {
	l := c.Layout
	probes := []probe{
		{
			what: "an outside address", dst: outside, want: unreachable,
			fix: "a node must have no default route",
		},
		{
			what: "a Service address kube-proxy does not know", dst: strings.TrimSuffix(l.ServiceCIDR, "0/24") + "200",
			want: routesTo("svc0"), fix: "the Service range must be routed to the node's svc0",
		},
	}
	for j := range c.Nodes {
		if j == i {
			continue
		}
		probes = append(probes, probe{
			what: "a pod of node " + c.Nodes[j].Name, dst: strings.TrimSuffix(l.NodePodCIDR(j+1), "0/24") + "200",
			want: routesTo("eth0"), fix: "the other nodes' pod ranges must be routed by way of those nodes",
		})
	}
	return probes
}

// CheckContained reports whether the machine and the nodes route the
// cluster's ranges so that no packet addressed to a pod or a Service, nor
// any packet from a pod or a node, can leave the machine. It only asks the
// kernel for routes; it sends nothing. A test that gets an error must fail
// rather than send.
func (c *Cluster) CheckContained(ctx context.Context) error {
	var errs []error
	for _, p := range c.hostProbes() {
		errs = append(errs, check("the machine", p, func(args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		}))
	}
	for i, n := range c.Nodes {
		for _, p := range c.nodeProbes(i) {
			errs = append(errs, check("node "+n.Name, p, func(args ...string) ([]byte, error) {
				cmd, err := c.NodeCommand(ctx, n.Name, append([]string{"ip"}, args...)...)
				if err != nil {
					return nil, err
				}
				return cmd.CombinedOutput()
			}))
		}
	}
	return errors.Join(errs...)
}

func check(where string, p probe, ip func(args ...string) ([]byte, error)) error {
	args := []string{"-4", "-o", "route", "get", p.dst}
	if p.from != "" {
		args = append(args, "from", p.from, "iif", p.iif)
	}
	out, err := ip(args...)
	route := strings.TrimSpace(string(out))
	if err != nil {
		// An unreachable route makes the look-up itself fail.
		if !strings.Contains(route, "No route to host") && !strings.Contains(route, "Network is unreachable") {
			return fmt.Errorf("cluster: on %s, route of %s (%s): %w: %s", where, p.what, p.dst, err, route)
		}
		route = "unreachable: " + route
	}
	if !p.want(route) {
		return fmt.Errorf("cluster: on %s, %s (%s) is routed as %q: %s; is the cluster up? (make cluster-up)", where, p.what, p.dst, route, p.fix)
	}
	return nil
}

// routeDev returns the device of a route as `ip -o route get` prints it.
func routeDev(route string) string {
	f := strings.Fields(route)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" {
			return f[i+1]
		}
	}
	return ""
}

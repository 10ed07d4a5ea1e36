package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// probes are route look-ups that CheckContained makes: each asks the kernel
// where a packet would go; none sends one. The far address is from a
// documentation range (RFC 5737) and is never contacted.
var probes = []struct {
	what, dst, from, iif string
	want                 func(route string) bool
	fix                  string
}{
	{
		what: "a Service address", dst: "10.96.0.200",
		want: func(r string) bool { return routeDev(r) == Sink },
		fix:  "the Service range must be routed to " + Sink,
	},
	{
		what: "a pod address", dst: "10.244.0.200",
		want: func(r string) bool { return routeDev(r) == Bridge },
		fix:  "the pod range must be routed to " + Bridge,
	},
	{
		what: "an address near the pod range", dst: "10.244.1.200",
		want: func(r string) bool { return routeDev(r) == Sink },
		fix:  "the guard range " + GuardCIDR + " must be routed to " + Sink,
	},
	{
		what: "a packet from a pod to another pod", dst: "10.244.0.201", from: "10.244.0.200", iif: Bridge,
		want: func(r string) bool { return routeDev(r) == Bridge },
		fix:  fmt.Sprintf("table %d must route the pod range to %s", RouteTable, Bridge),
	},
	{
		what: "a packet from a pod to an outside address", dst: "198.51.100.7", from: "10.244.0.200", iif: Bridge,
		want: func(r string) bool { return strings.HasPrefix(r, "unreachable") },
		fix:  fmt.Sprintf("packets from pods must be routed by table %d, which has no default route", RouteTable),
	},
}

// CheckContained reports whether the host routes the harness's ranges so that
// no packet addressed to a pod or a Service, nor any packet from a pod, can
// leave the machine. It only asks the kernel for routes; it sends nothing. A
// test that gets an error must fail rather than send.
func CheckContained(ctx context.Context) error {
	var errs []error
	for _, p := range probes {
		args := []string{"-4", "-o", "route", "get", p.dst}
		if p.from != "" {
			args = append(args, "from", p.from, "iif", p.iif)
		}
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		route := strings.TrimSpace(string(out))
		if err != nil {
			// An unreachable route makes the look-up itself fail.
			if !strings.Contains(route, "No route to host") && !strings.Contains(route, "Network is unreachable") {
				errs = append(errs, fmt.Errorf("cluster: route of %s (%s): %w: %s", p.what, p.dst, err, route))
				continue
			}
			route = "unreachable: " + route
		}
		if !p.want(route) {
			errs = append(errs, fmt.Errorf("cluster: %s (%s) is routed as %q: %s; is the cluster up? (make cluster-up)", p.what, p.dst, route, p.fix))
		}
	}
	return errors.Join(errs...)
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

// InRanges reports whether addr is one the harness owns: a pod or Service
// address or the node's. Tests check an address with it before they send to
// it from the host.
func InRanges(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, c := range []string{PodCIDR, ServiceCIDR} {
		if netip.MustParsePrefix(c).Contains(a) {
			return true
		}
	}
	return false
}

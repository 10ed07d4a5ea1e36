package meshnode

import (
	"net/netip"
	"slices"
	"testing"
)

// routeHeader is the first line of /proc/net/route.
const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

func TestParseRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want []netip.Addr
	}{{
		name: "empty",
		data: "",
	}, {
		name: "the header only",
		data: routeHeader,
	}, {
		name: "a pod's routes: the default one's gateway, little endian",
		data: routeHeader +
			"eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
		want: []netip.Addr{netip.MustParseAddr("10.244.1.1")},
	}, {
		name: "two default routes, one gateway twice",
		data: routeHeader +
			"eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\t0101F40A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\tFE01A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n",
		want: []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("192.168.1.254")},
	}, {
		name: "a default route without a gateway (on-link)",
		data: routeHeader + "eth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n",
	}, {
		name: "a first line that is a route is the header all the same",
		data: "eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
	}, {
		name: "not hex, too short, too long",
		data: routeHeader +
			"eth0\t00000000\tnothex\n" +
			"eth0\t00000000\n" +
			"eth0\t00000000\t1FFFFFFFF\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseRoutes([]byte(tc.data)); !slices.Equal(got, tc.want) {
				t.Errorf("parseRoutes = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzParseRoutes: whatever a route file holds, the gateways are IPv4
// addresses, none zero, none twice.
func FuzzParseRoutes(f *testing.F) {
	f.Add([]byte(routeHeader + "eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"))
	f.Add([]byte(""))
	f.Add([]byte("\n\n x 00000000 ffffffff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := parseRoutes(data)
		for i, a := range got {
			if !a.Is4() || a.IsUnspecified() || slices.Contains(got[:i], a) {
				t.Fatalf("parseRoutes(%q) = %v", data, got)
			}
		}
	})
}

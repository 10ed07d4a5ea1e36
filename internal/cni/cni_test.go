package cni_test

import (
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kzero.dev/kzero/internal/cni"
)

// goodRequest is an ADD as the plugin sends it for a pod of a dual-stack
// cluster.
func goodRequest() cni.Request {
	return cni.Request{
		ContainerID: "3f2a9c0d5e1b7a4c8d6e2f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c",
		Netns:       "/var/run/netns/cni-8a1f4c2e-0b6d-3e5f-9a7c-1d2e3f4a5b6c",
		Namespace:   "shop",
		Name:        "web-7d9f8b6c5-x2k4p",
		UID:         "8a1f4c2e-0b6d-4e5f-9a7c-1d2e3f4a5b6c",
		IPs:         []netip.Addr{netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("fd00:10:244:1::7")},
		Gateways:    []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("fd00:10:244:1::1")},
	}
}

// The messages of k8s.io/apimachinery's validation, which Validate quotes.
const (
	labelMsg     = `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`
	subdomainMsg = `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`
)

func TestRequestValidate(t *testing.T) {
	addrs := func(n int) []netip.Addr {
		var a []netip.Addr
		for i := range n {
			a = append(a, netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 2)}))
		}
		return a
	}
	for _, tc := range []struct {
		name    string
		edit    func(*cni.Request)
		wantErr string
	}{
		{name: "good", edit: func(*cni.Request) {}},
		{name: "DEL", edit: func(r *cni.Request) { r.Delete = true; r.Netns = ""; r.IPs = nil; r.Gateways = nil }},
		{name: "no addresses", edit: func(r *cni.Request) { r.IPs = nil; r.Gateways = nil }},
		{name: "8 addresses and 8 gateways", edit: func(r *cni.Request) { r.IPs = addrs(8); r.Gateways = addrs(8) }},
		{name: "containerID of 256 bytes", edit: func(r *cni.Request) { r.ContainerID = strings.Repeat("a", 256) }},
		{name: "name with dots", edit: func(r *cni.Request) { r.Name = "web.shop.v2" }},
		{name: "uid of 64 bytes", edit: func(r *cni.Request) { r.UID = strings.Repeat("u", 64) }},
		{name: "netns of 4096 bytes", edit: func(r *cni.Request) { r.Netns = strings.Repeat("n", 4096) }},

		{
			name:    "empty containerID",
			edit:    func(r *cni.Request) { r.ContainerID = "" },
			wantErr: `containerID "": want the runtime's sandbox ID`,
		},
		{
			name:    "containerID with a slash",
			edit:    func(r *cni.Request) { r.ContainerID = "../../etc/passwd" },
			wantErr: `containerID "../../etc/passwd": want the runtime's sandbox ID`,
		},
		{
			name:    "containerID with a NUL",
			edit:    func(r *cni.Request) { r.ContainerID = "3f2a\x00" },
			wantErr: `containerID "3f2a\x00": want the runtime's sandbox ID`,
		},
		{
			name:    "containerID of 257 bytes",
			edit:    func(r *cni.Request) { r.ContainerID = strings.Repeat("a", 257) },
			wantErr: `containerID "` + strings.Repeat("a", 257) + `": want the runtime's sandbox ID`,
		},
		{
			name:    "netns longer than a path",
			edit:    func(r *cni.Request) { r.Netns = strings.Repeat("n", 4097) },
			wantErr: "netns: longer than a path",
		},
		{
			name:    "namespace with capitals",
			edit:    func(r *cni.Request) { r.Namespace = "Shop" },
			wantErr: `namespace "Shop": ` + labelMsg,
		},
		{
			name:    "namespace with a dot",
			edit:    func(r *cni.Request) { r.Namespace = "shop.eu" },
			wantErr: `namespace "shop.eu": must not contain dots`,
		},
		{
			name:    "empty namespace",
			edit:    func(r *cni.Request) { r.Namespace = "" },
			wantErr: `namespace "": ` + labelMsg,
		},
		{
			name:    "namespace of 64 bytes",
			edit:    func(r *cni.Request) { r.Namespace = strings.Repeat("s", 64) },
			wantErr: `namespace "` + strings.Repeat("s", 64) + `": must be no more than 63 characters`,
		},
		{
			name:    "name with a slash",
			edit:    func(r *cni.Request) { r.Name = "web/0" },
			wantErr: `name "web/0": ` + subdomainMsg,
		},
		{
			name:    "empty name",
			edit:    func(r *cni.Request) { r.Name = "" },
			wantErr: `name "": ` + subdomainMsg,
		},
		{
			name:    "empty uid",
			edit:    func(r *cni.Request) { r.UID = "" },
			wantErr: `uid "": want the pod's UID`,
		},
		{
			name:    "uid of 65 bytes",
			edit:    func(r *cni.Request) { r.UID = strings.Repeat("u", 65) },
			wantErr: `uid "` + strings.Repeat("u", 65) + `": want the pod's UID`,
		},
		{
			name:    "9 addresses",
			edit:    func(r *cni.Request) { r.IPs = addrs(9) },
			wantErr: "more than 8 addresses or gateways: a pod has one or two",
		},
		{
			name:    "9 gateways",
			edit:    func(r *cni.Request) { r.Gateways = addrs(9) },
			wantErr: "more than 8 addresses or gateways: a pod has one or two",
		},
		{
			name: "everything wrong",
			edit: func(r *cni.Request) {
				*r = cni.Request{ContainerID: "a/b", Namespace: "Shop", Name: "web/0", IPs: addrs(9)}
			},
			wantErr: `containerID "a/b": want the runtime's sandbox ID` + "\n" +
				`namespace "Shop": ` + labelMsg + "\n" +
				`name "web/0": ` + subdomainMsg + "\n" +
				`uid "": want the pod's UID` + "\n" +
				"more than 8 addresses or gateways: a pod has one or two",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := goodRequest()
			tc.edit(&r)
			err := r.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v, want error %q", r, tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("Validate error:\n%s\nwant:\n%s", err, tc.wantErr)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	got := string(cni.Encode(goodRequest()))
	want := `{"containerID":"3f2a9c0d5e1b7a4c8d6e2f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c",` +
		`"netns":"/var/run/netns/cni-8a1f4c2e-0b6d-3e5f-9a7c-1d2e3f4a5b6c","namespace":"shop",` +
		`"name":"web-7d9f8b6c5-x2k4p","uid":"8a1f4c2e-0b6d-4e5f-9a7c-1d2e3f4a5b6c",` +
		`"ips":["10.244.1.7","fd00:10:244:1::7"],"gateways":["10.244.1.1","fd00:10:244:1::1"]}`
	if got != want {
		t.Errorf("Encode(request) =\n%s\nwant\n%s", got, want)
	}
	if got, want := string(cni.Encode(cni.Reply{Enrolled: true, Error: "no pod"})), `{"enrolled":true,"error":"no pod"}`; got != want {
		t.Errorf("Encode(reply) = %s, want %s", got, want)
	}
	if got, want := string(cni.Encode(cni.Reply{})), `{"enrolled":false}`; got != want {
		t.Errorf("Encode(empty reply) = %s, want %s", got, want)
	}
}

func TestEnrolled(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "enrolled")
		want := []string{"shop", "payments", "kube-public"}
		if err := cni.WriteEnrolled(path, want); err != nil {
			t.Fatal(err)
		}
		set, ok, err := cni.ReadEnrolled(path)
		if err != nil || !ok {
			t.Fatalf("ReadEnrolled = %v, %v, %v", set, ok, err)
		}
		if got := slices.Sorted(maps.Keys(set)); !slices.Equal(got, []string{"kube-public", "payments", "shop"}) {
			t.Errorf("ReadEnrolled = %v, want %v", got, want)
		}
		for _, ns := range want {
			if !set[ns] {
				t.Errorf("%s not enrolled", ns)
			}
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o600 {
			t.Errorf("mode %v, want -rw-------", fi.Mode())
		}
	})
	t.Run("none enrolled", func(t *testing.T) {
		// An empty list is a list: nothing is enrolled, as opposed to no
		// file, where the plugin refuses every pod.
		path := filepath.Join(t.TempDir(), "enrolled")
		if err := cni.WriteEnrolled(path, nil); err != nil {
			t.Fatal(err)
		}
		set, ok, err := cni.ReadEnrolled(path)
		if err != nil || !ok || len(set) != 0 {
			t.Errorf("ReadEnrolled = %v, %v, %v, want an empty set, true, nil", set, ok, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		set, ok, err := cni.ReadEnrolled(filepath.Join(t.TempDir(), "enrolled"))
		if set != nil || ok || err != nil {
			t.Errorf("ReadEnrolled = %v, %v, %v, want nil, false, nil", set, ok, err)
		}
	})
	t.Run("replaced whole", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "enrolled")
		if err := cni.WriteEnrolled(path, []string{"shop", "payments"}); err != nil {
			t.Fatal(err)
		}
		if err := cni.WriteEnrolled(path, []string{"payments"}); err != nil {
			t.Fatal(err)
		}
		set, _, err := cni.ReadEnrolled(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(set) != 1 || !set["payments"] {
			t.Errorf("ReadEnrolled = %v, want only payments", set)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("the directory holds %v: WriteEnrolled left its temporary file", names)
		}
	})
	t.Run("written by hand", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "enrolled")
		if err := os.WriteFile(path, []byte("  shop \n\n\tpayments\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		set, ok, err := cni.ReadEnrolled(path)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if got := slices.Sorted(maps.Keys(set)); !slices.Equal(got, []string{"payments", "shop"}) {
			t.Errorf("ReadEnrolled = %v, want [payments shop]", got)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		// A directory opens but does not read: an error, which the plugin
		// takes as a refusal.
		_, _, err := cni.ReadEnrolled(t.TempDir())
		if err == nil {
			t.Error("ReadEnrolled of a directory: no error")
		}
	})
	t.Run("no directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		err := cni.WriteEnrolled(filepath.Join(dir, "enrolled"), []string{"shop"})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("WriteEnrolled in a missing directory: %v, want ErrNotExist", err)
		}
		if want := "cni: enrolled list: open " + dir + "/.enrolled-"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("WriteEnrolled error %q, want it to start with %q", err, want)
		}
	})
}

// An address the agent would capture with must be a real one.
func TestValidateRefusesEmptyAddresses(t *testing.T) {
	r := cni.Request{ContainerID: "abc", Netns: "/var/run/netns/cni-1", Namespace: "shop", Name: "web-0", UID: "u-1",
		IPs: []netip.Addr{{}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "want an IP address without a zone") {
		t.Errorf("a request with the zero address: %v", err)
	}
}

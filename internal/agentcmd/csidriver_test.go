package agentcmd

import (
	"bytes"
	"strings"
	"testing"

	"kzero.dev/kzero/api/v1alpha1"
)

// TestCSIDriverFlags: the CSI driver's flags are checked before anything
// starts, with a message naming the flag; its sockets default to kubelet's
// directories.
func TestCSIDriverFlags(t *testing.T) {
	env := map[string]string{"NODE_NAME": "node-a"}
	base := csiFlags{dir: v1alpha1.WorkloadAPIDir, kubeletDir: v1alpha1.KubeletDir}
	long := "/" + strings.Repeat("k", 80)
	for _, tc := range []struct {
		name   string
		change func(*csiFlags)
		env    map[string]string
		want   string // the error; empty: none
	}{
		{name: "the defaults", env: env},
		{name: "no node", env: map[string]string{},
			want: "--node-name: empty, and no $NODE_NAME: give this node's name (kzero install's DaemonSet sets NODE_NAME from spec.nodeName)"},
		{name: "a directory with more than the socket in it", env: env, change: func(f *csiFlags) { f.dir = "/run" },
			want: `--workload-api-dir "/run": want the directory of the agent's socket alone, an absolute, clean path such as /run/kzero/agent: everything in it is shown to pods`},
		{name: "a relative directory", env: env, change: func(f *csiFlags) { f.dir = "run/kzero/agent" },
			want: `--workload-api-dir "run/kzero/agent": want the directory of the agent's socket alone, an absolute, clean path such as /run/kzero/agent: everything in it is shown to pods`},
		{name: "relative kubelet dir", env: env, change: func(f *csiFlags) { f.kubeletDir = "var/lib/kubelet" },
			want: `--kubelet-dir "var/lib/kubelet": want kubelet's root directory (its --root-dir), an absolute, clean path such as /var/lib/kubelet`},
		{name: "kubelet dir /", env: env, change: func(f *csiFlags) { f.kubeletDir = "/" },
			want: `--kubelet-dir "/": want kubelet's root directory (its --root-dir), an absolute, clean path such as /var/lib/kubelet`},
		{name: "a kubelet dir too long for the sockets", env: env, change: func(f *csiFlags) { f.kubeletDir = long },
			want: `--csi-socket "` + long + `/plugins/csi.kzero.dev/csi.sock": 112 bytes, over the 107 a unix socket's path may have: give a shorter path (or a shorter --kubelet-dir)`},
		{name: "a relative CSI socket", env: env, change: func(f *csiFlags) { f.csiSocket = "csi.sock" },
			want: `--csi-socket "csi.sock": want an absolute, clean path`},
		{name: "a registration socket kubelet does not watch", env: env, change: func(f *csiFlags) { f.csiRegSocket = "/var/lib/kubelet/plugins/reg.sock" },
			want: `--csi-registration-socket "/var/lib/kubelet/plugins/reg.sock": not in /var/lib/kubelet/plugins_registry, where kubelet looks for plugins`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			if tc.change != nil {
				tc.change(&f)
			}
			cfg, err := f.validate(func(k string) string { return tc.env[k] })
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error %v\nwant  %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.NodeID != "node-a" || cfg.SourceDir != "/run/kzero/agent" || cfg.Endpoint != "/var/lib/kubelet/plugins/csi.kzero.dev/csi.sock" ||
				cfg.RegistrationSocket != "/var/lib/kubelet/plugins_registry/csi.kzero.dev-reg.sock" {
				t.Errorf("config %+v, want node-a, the agent's directory and kubelet's default sockets", cfg)
			}
		})
	}
}

// TestCSIDriverHelp: every flag is explained, with its default.
func TestCSIDriverHelp(t *testing.T) {
	var out bytes.Buffer
	root := New()
	root.SetOut(&out)
	root.SetArgs([]string{"csi-driver", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  --node-name ", "  --workload-api-dir ", "  --kubelet-dir ", "  --csi-socket ", "  --csi-registration-socket ",
		`(default "/var/lib/kubelet")`, `(default "/run/kzero/agent")`, "privileged"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

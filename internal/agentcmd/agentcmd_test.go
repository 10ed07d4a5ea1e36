package agentcmd

import (
	"bytes"
	"strings"
	"testing"

	"kzero.dev/kzero/api/v1alpha1"
)

// TestAgentFlags: the agent's flags are checked before anything starts,
// with a message naming the flag and saying what to set; the defaults of
// --node-name and --authority-url come from the environment kubelet gives
// the DaemonSet's pods.
func TestAgentFlags(t *testing.T) {
	env := map[string]string{"NODE_NAME": "node-a", "KZERO_AUTHORITY_SERVICE_HOST": "10.96.0.7", "KZERO_AUTHORITY_SERVICE_PORT_AGENT": "8445"}
	base := agentFlags{trustDomain: "cluster.local", bundleFile: defaultAgentBundleFile, tokenFile: defaultAgentTokenFile, socket: v1alpha1.WorkloadAPISocket,
		cniBinary: "/kzero-cni", cniBinDir: "/opt/cni/bin", cniConfDir: "/etc/cni/net.d"}
	for _, tc := range []struct {
		name   string
		change func(*agentFlags)
		env    map[string]string
		// want is the error; empty: none, and node, url and id are the
		// settings.
		want          string
		node, url, id string
	}{
		{name: "from the environment", env: env,
			node: "node-a", url: "https://10.96.0.7:8445", id: "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority"},
		{name: "an IPv6 service address", env: map[string]string{"NODE_NAME": "node-a", "KZERO_AUTHORITY_SERVICE_HOST": "fd00:10:96::7", "KZERO_AUTHORITY_SERVICE_PORT_AGENT": "8445"},
			node: "node-a", url: "https://[fd00:10:96::7]:8445", id: "spiffe://cluster.local/ns/kzero-system/sa/kzero-authority"},
		{name: "given", env: env, change: func(f *agentFlags) {
			f.nodeName, f.authorityURL, f.authorityID = "node-b", "https://kzero-authority.kzero.svc:9000", "spiffe://cluster.local/ns/x/sa/kzero-authority"
		}, node: "node-b", url: "https://kzero-authority.kzero.svc:9000", id: "spiffe://cluster.local/ns/x/sa/kzero-authority"},
		{name: "another trust domain", env: env, change: func(f *agentFlags) { f.trustDomain = "example.org" },
			node: "node-a", url: "https://10.96.0.7:8445", id: "spiffe://example.org/ns/kzero-system/sa/kzero-authority"},
		{name: "no node", env: map[string]string{},
			want: "--node-name: empty, and no $NODE_NAME: give this node's name (kzero install's DaemonSet sets NODE_NAME from spec.nodeName)"},
		{name: "a bad node name", env: env, change: func(f *agentFlags) { f.nodeName = "Node/A" },
			want: `--node-name "Node/A": not a node name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{name: "no authority", env: map[string]string{"NODE_NAME": "n"},
			want: "--authority-url: empty, and $KZERO_AUTHORITY_SERVICE_HOST or $KZERO_AUTHORITY_SERVICE_PORT_AGENT is not set (kubelet sets them in the pods of the Service kzero-authority's namespace made after it): give the authority's agent API, https://host:port"},
		{name: "no port of the authority", env: map[string]string{"NODE_NAME": "n", "KZERO_AUTHORITY_SERVICE_HOST": "10.96.0.7"},
			want: "--authority-url: empty, and $KZERO_AUTHORITY_SERVICE_HOST or $KZERO_AUTHORITY_SERVICE_PORT_AGENT is not set (kubelet sets them in the pods of the Service kzero-authority's namespace made after it): give the authority's agent API, https://host:port"},
		{name: "http", env: env, change: func(f *agentFlags) { f.authorityURL = "http://a:1" },
			want: `--authority-url "http://a:1": want https://host:port: the agent API is HTTPS only`},
		{name: "a path", env: env, change: func(f *agentFlags) { f.authorityURL = "https://a:1/v1/agent" },
			want: `--authority-url "https://a:1/v1/agent": want https://host:port and nothing more: the agent API's paths are fixed`},
		{name: "no host", env: env, change: func(f *agentFlags) { f.authorityURL = "https://:8445" },
			want: `--authority-url "https://:8445": no host: want https://host:port`},
		{name: "not a URL", env: env, change: func(f *agentFlags) { f.authorityURL = "https://a b:1" },
			want: `--authority-url "https://a b:1": invalid character " " in host name`},
		{name: "bad trust domain", env: env, change: func(f *agentFlags) { f.trustDomain = "Bad" },
			want: `--trust-domain "Bad": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{name: "authority ID not a SPIFFE ID", env: env, change: func(f *agentFlags) { f.authorityID = "kzero-authority" },
			want: `--authority-id "kzero-authority": scheme is missing or invalid`},
		{name: "authority of another trust domain", env: env, change: func(f *agentFlags) { f.authorityID = "spiffe://other/ns/x/sa/y" },
			want: `--authority-id "spiffe://other/ns/x/sa/y": not in --trust-domain cluster.local: the authority's SVID is of its trust domain`},
		{name: "authority ID without a path", env: env, change: func(f *agentFlags) { f.authorityID = "spiffe://cluster.local" },
			want: `--authority-id "spiffe://cluster.local": no path: give the authority's, such as spiffe://cluster.local/ns/kzero-system/sa/kzero-authority`},
		{name: "relative socket", env: env, change: func(f *agentFlags) { f.socket = "agent.sock" }, want: `--socket "agent.sock": want an absolute path`},
		{name: "relative CNI directory", env: env, change: func(f *agentFlags) { f.cniConfDir = "net.d" }, want: `--cni-conf-dir "net.d": want an absolute path`},
		{name: "relative token file", env: env, change: func(f *agentFlags) { f.tokenFile = "token" }, want: `--token-file "token": want an absolute path`},
		{name: "no bundle file", env: env, change: func(f *agentFlags) { f.bundleFile = "" }, want: `--bundle-file "": want an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			if tc.change != nil {
				tc.change(&f)
			}
			set, err := f.validate(func(k string) string { return tc.env[k] })
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error %v\nwant  %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if set.node != tc.node || set.url != tc.url || set.authorityID.String() != tc.id {
				t.Errorf("node %s, url %s, id %s; want %s, %s, %s", set.node, set.url, set.authorityID, tc.node, tc.url, tc.id)
			}
		})
	}
}

// TestAgentHelp: every flag is explained, with its default.
func TestAgentHelp(t *testing.T) {
	var out bytes.Buffer
	root := New()
	root.SetOut(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  --kubeconfig ", "  --node-name ", "  --trust-domain ", "  --authority-url ", "  --authority-id ",
		"  --bundle-file ", "  --token-file ", "  --socket ", "csi-driver",
		`(default "/run/kzero/agent/agent.sock")`, `(default "/var/run/secrets/kzero.dev/authority/token")`,
		`(default "/var/run/secrets/kzero.dev/authority/bundle.pem")`, "docs/agent.md"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestAgentFlagsCheckedBeforeTheCluster: a bad flag fails the command
// before it looks for a cluster; good ones go on to look for one.
func TestAgentFlagsCheckedBeforeTheCluster(t *testing.T) {
	t.Setenv("NODE_NAME", "node-a")
	t.Setenv("KZERO_AUTHORITY_SERVICE_HOST", "")
	t.Setenv("KZERO_AUTHORITY_SERVICE_PORT_AGENT", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--authority-url", "http://a:1"}, `--authority-url "http://a:1": want https://host:port: the agent API is HTTPS only`},
		{[]string{"--authority-url", "https://10.96.0.7:8445"}, "no Kubernetes configuration: give --kubeconfig, set KUBECONFIG, or run in a pod with a service account: "},
	} {
		var out bytes.Buffer
		root := New()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--kubeconfig", "/nonexistent"}, tc.args...))
		if err := root.Execute(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %s", tc.args, err, tc.want)
		}
	}
}

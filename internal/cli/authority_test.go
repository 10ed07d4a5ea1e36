package cli_test

import (
	"strings"
	"testing"
)

// TestAuthorityFlags: bad flags are refused before anything reaches a
// cluster (there is none here), with a message naming the flag.
func TestAuthorityFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad trust domain", []string{"--trust-domain", "Cluster Local"},
			`--trust-domain "Cluster Local": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores`},
		{"empty trust domain", []string{"--trust-domain", ""},
			`--trust-domain "": trust domain is missing`},
		{"lifetime too short", []string{"--lifetime", "10m"},
			"--lifetime 10m0s: must be between 1h0m0s and 24h0m0s"},
		{"addr without port", []string{"--webhook-addr", "10.0.0.1"},
			`--webhook-addr "10.0.0.1": want host:port or :port: address 10.0.0.1: missing port in address`},
		{"addr with a named port", []string{"--webhook-addr", ":https"},
			`--webhook-addr ":https": the port must be a number from 1 to 65535`},
		{"addr with port 0", []string{"--webhook-addr", ":0"},
			`--webhook-addr ":0": the port must be a number from 1 to 65535`},
		{"bad service", []string{"--webhook-service", "Kzero.Authority"},
			`--webhook-service "Kzero.Authority": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"bad webhook config", []string{"--webhook-config", "kzero_pod"},
			`--webhook-config "kzero_pod": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"bad ip", []string{"--webhook-ip", "10.0.0.300"},
			`invalid argument "10.0.0.300" for "--webhook-ip" flag: invalid string being converted to IP address: 10.0.0.300`},
		{"bundle addr without port", []string{"--bundle-addr", "10.0.0.1"},
			`--bundle-addr "10.0.0.1": want host:port or :port: address 10.0.0.1: missing port in address`},
		{"bundle addr with port 0", []string{"--bundle-addr", "127.0.0.1:0"},
			`--bundle-addr "127.0.0.1:0": the port must be a number from 1 to 65535`},
		{"bundle addr on the webhook's port", []string{"--bundle-addr", "0.0.0.0:8443"},
			`--bundle-addr "0.0.0.0:8443": the webhook listens there (--webhook-addr ":8443"): give the bundle endpoint its own port`},
		{"bundle id not a SPIFFE ID", []string{"--bundle-id", "bundle-server"},
			`--bundle-id "bundle-server": scheme is missing or invalid`},
		{"bundle id in another trust domain", []string{"--bundle-id", "spiffe://example.org/bundle"},
			`--bundle-id "spiffe://example.org/bundle": not in --trust-domain cluster.local: the CA issues SVIDs only in its own trust domain`},
		{"bundle id without a path", []string{"--bundle-id", "spiffe://cluster.local"},
			`--bundle-id "spiffe://cluster.local": no path: name the endpoint, such as spiffe://cluster.local/ns/kzero-system/sa/kzero-authority`},
		{"bundle id with the endpoint off", []string{"--bundle-addr", "", "--bundle-id", "spiffe://cluster.local/bundle"},
			`--bundle-id "spiffe://cluster.local/bundle": the bundle endpoint is off (--bundle-addr is empty): give --bundle-addr too, or drop --bundle-id`},
		{"agent addr without port", []string{"--agent-addr", "10.0.0.1"},
			`--agent-addr "10.0.0.1": want host:port or :port: address 10.0.0.1: missing port in address`},
		{"agent addr with port 0", []string{"--agent-addr", ":0"},
			`--agent-addr ":0": the port must be a number from 1 to 65535`},
		{"agent addr on the webhook's port", []string{"--agent-addr", "127.0.0.1:8443"},
			`--agent-addr "127.0.0.1:8443": the webhook listens there (--webhook-addr ":8443"): give the agent API its own port`},
		{"agent addr on the bundle endpoint's port", []string{"--agent-addr", ":8444"},
			`--agent-addr ":8444": the bundle endpoint listens there (--bundle-addr ":8444"): give the agent API its own port`},
		{"agent SVID TTL too short", []string{"--agent-svid-ttl", "30s"},
			"--agent-svid-ttl 30s: must be between 1m0s and 24h0m0s"},
		{"agent SVID TTL too long", []string{"--agent-svid-ttl", "48h"},
			"--agent-svid-ttl 48h0m0s: must be between 1m0s and 24h0m0s"},
		{"workload SVID TTL too short", []string{"--workload-svid-ttl", "0s"},
			"--workload-svid-ttl 0s: must be between 1m0s and 24h0m0s"},
		{"workload SVID TTL too long", []string{"--workload-svid-ttl", "25h"},
			"--workload-svid-ttl 25h0m0s: must be between 1m0s and 24h0m0s"},
		{"bad agent service account", []string{"--agent-service-account", "Kzero_Agent"},
			`--agent-service-account "Kzero_Agent": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		{"audit checkpoint interval too short", []string{"--audit-checkpoint-interval", "500ms"},
			"--audit-checkpoint-interval 500ms: must be between 1s and 1h0m0s"},
		{"audit checkpoint interval too long", []string{"--audit-checkpoint-interval", "2h"},
			"--audit-checkpoint-interval 2h0m0s: must be between 1s and 1h0m0s"},
		{"empty agent daemonset", []string{"--agent-daemonset", ""},
			`--agent-daemonset "": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append([]string{"authority", "--kubeconfig", "/nonexistent"}, tc.args...)...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v\nwant  %s\n(output %q)", err, tc.want, out)
			}
		})
	}
}

// TestAuthorityHelp: every flag is explained.
func TestAuthorityHelp(t *testing.T) {
	out, err := run("authority", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--kubeconfig", "--trust-domain", "--namespace", "--secret", "--lifetime", "--identity",
		"--webhook-addr", "--webhook-service", "--webhook-config", "--webhook-ip", "--webhook-client-ca", "--webhook-client-name", "--bundle-addr", "--bundle-id",
		"--agent-addr", "--agent-svid-ttl", "--workload-svid-ttl", "--agent-service-account", "--agent-daemonset",
		"--audit-checkpoint-interval"} {
		if !strings.Contains(out, "  "+flag+" ") {
			t.Errorf("--help does not explain %s:\n%s", flag, out)
		}
	}
}

// TestAuthorityFlagsAccepted: good bundle endpoint and agent API settings
// pass the checks and the authority goes on to look for a cluster.
func TestAuthorityFlagsAccepted(t *testing.T) {
	const want = "no Kubernetes configuration: give --kubeconfig, set KUBECONFIG, or run in a pod with a service account: "
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"off", []string{"--bundle-addr", ""}},
		{"an ID of its own", []string{"--bundle-id", "spiffe://cluster.local/kzero/bundle-endpoint"}},
		{"the webhook's port on another IP", []string{"--webhook-addr", "127.0.0.1:8443", "--bundle-addr", "127.0.0.2:8443"}},
		{"agent API off", []string{"--agent-addr", ""}},
		{"agent API on the bundle endpoint's port, which is off", []string{"--bundle-addr", "", "--agent-addr", ":8444"}},
		{"short agent SVIDs", []string{"--agent-svid-ttl", "1m", "--workload-svid-ttl", "24h"}},
		{"agents of another name", []string{"--agent-service-account", "node-agent", "--agent-daemonset", "node-agent"}},
		{"checkpoints every 2 s", []string{"--audit-checkpoint-interval", "2s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(append([]string{"authority", "--kubeconfig", "/nonexistent"}, tc.args...)...)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err = %v\nwant  %s...\n(output %q)", err, want, out)
			}
		})
	}
}

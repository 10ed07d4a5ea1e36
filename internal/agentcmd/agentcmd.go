// Package agentcmd is the command of the node agent: `kzero agent` in
// kzero's command line and the whole of the kzero-agent binary, which the
// DaemonSet runs (the agent's code alone, for a small footprint).
package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/agent"
	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/kubeconfig"
)

// agentFlags are the bootstrap settings of `kzero agent`.
type agentFlags struct {
	kubeconfig   string
	nodeName     string
	trustDomain  string
	authorityURL string
	authorityID  string
	bundleFile   string
	tokenFile    string
	socket       string
	cniBinary    string
	cniBinDir    string
	cniConfDir   string
	metricsAddr  string
	noMesh       bool
}

// Where kzero install mounts the agent's token and bundle (the projected
// volume of the DaemonSet), and the environment variables the agent reads
// its defaults from.
const (
	defaultAgentBundleFile = "/var/run/secrets/kzero.dev/authority/bundle.pem"
	defaultAgentTokenFile  = "/var/run/secrets/kzero.dev/authority/token" //nolint:gosec // a path, not a credential
	// nodeNameEnv is set by the DaemonSet from spec.nodeName.
	nodeNameEnv = "NODE_NAME"
	// authorityHostEnv and authorityPortEnv are what kubelet sets in the
	// pods of a namespace for the Service kzero-authority and its port
	// named "agent", created before them: no cluster DNS is needed.
	authorityHostEnv = "KZERO_AUTHORITY_SERVICE_HOST"
	authorityPortEnv = "KZERO_AUTHORITY_SERVICE_PORT_AGENT"
)

// New returns the agent command, named agent.
func New() *cobra.Command {
	f := agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Serve the SPIFFE Workload API to the pods of this node",
		Long: `Runs on every node (the DaemonSet kzero-agent of kzero install) and serves
the SPIFFE Workload API to the pods of the node:
  - It attests to the authority: it posts the projected service account
    token in --token-file (audience kzero; read again for every
    attestation, as kubelet rotates it) to the agent API at
    --authority-url. The authority checks it with a TokenReview, and that
    it is bound to a pod of the kzero-agent DaemonSet on the node the token
    names, and issues the agent the X.509-SVID
    spiffe://<trust-domain>/kzero/agent/<--node-name>, which it presents
    on every other call.
  - It attests the authority: the server must present an X.509-SVID for
    --authority-id that verifies against the trust domain's CAs in
    --bundle-file (the ClusterTrustBundle kubelet projects; read again for
    every connection) or in the bundle last fetched from the authority.
  - It attests again at half life of its SVID and, when that fails (the
    authority down or refusing), after 1s, doubling up to a minute, for
    ever: once the authority is back, even long after the agent's SVID
    has expired, the agent recovers by itself.
  - It fetches the trust domain's bundle from the authority every 30s and
    right after every attestation, and serves it.
  - It serves the Workload API on the unix socket --socket, once it has
    read the node's pods and the namespaces from the API server: a caller
    is identified by SO_PEERCRED, its PID's cgroup, and the pod and
    container the API server says run on this node, in a namespace labeled
    kzero.dev/enrolled=true. It gets the X.509-SVID of its pod's service
    account (cached per service account, renewed at half life, pushed on
    its stream), JWT-SVIDs and the bundles; the authority signs them, for
    the pods of this node only. Anything else gets PermissionDenied; a
    request without the header workload.spiffe.io: true, InvalidArgument.

It is also the node's mesh (docs/mesh.md), unless --no-mesh: it installs
its chained CNI plugin (--cni-binary) in --cni-bin-dir and chains it after
the pod network's plugin in the first .conflist of --cni-conf-dir (and
checks every 30s that it still is); for
every pod of an enrolled namespace, which the plugin tells it of before the
pod's containers start (or which it finds running), it installs capture
rules and opens listeners inside the pod's network namespace, and carries
the pod's TCP: to an enrolled destination over HBONE (HTTP/2 CONNECT over
mTLS, port 15008) with the pod's X.509-SVID; on its own port 15008,
decided by the AccessPolicies; plain text from outside the mesh refused,
or let in where the namespace is labeled kzero.dev/mesh-mode=permissive.
Every decision is an audit event on stdout; --metrics-addr serves the
mesh's Prometheus metrics.

The pods of enrolled namespaces reach the socket through the CSI driver
` + v1alpha1.CSIDriverName + `, which "csi-driver" serves in a container of its own,
and find it through SPIFFE_ENDPOINT_SOCKET, which the authority's webhook
sets along with the CSI volume. Logs (JSON) go to stderr, never with a key or a token. See
docs/agent.md. It stops on SIGTERM or interrupt, removing its sockets.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, f) },
	}
	cmd.AddCommand(csiDriverCommand())
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: $KUBECONFIG, then the pod's service account (in cluster)")
	fl.StringVar(&f.nodeName, "node-name", "", "this node's name; empty: $"+nodeNameEnv)
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "the SPIFFE trust domain")
	fl.StringVar(&f.authorityURL, "authority-url", "", "the authority's agent API, https://host:port; empty: https://$"+authorityHostEnv+":$"+authorityPortEnv+", which kubelet sets for the Service kzero-authority")
	fl.StringVar(&f.authorityID, "authority-id", "", "the SPIFFE ID the authority presents; empty: spiffe://<trust-domain>/ns/"+v1alpha1.Namespace+"/sa/kzero-authority")
	fl.StringVar(&f.bundleFile, "bundle-file", defaultAgentBundleFile, "the trust domain's CAs (PEM) to verify the authority with")
	fl.StringVar(&f.tokenFile, "token-file", defaultAgentTokenFile, "the projected service account token (audience kzero) to attest with")
	fl.StringVar(&f.socket, "socket", v1alpha1.WorkloadAPISocket, "the unix socket of the Workload API; the CSI driver binds the directory it shares with the agent into pods")
	fl.StringVar(&f.cniBinary, "cni-binary", "/kzero-cni", "the chained CNI plugin to install on the node")
	fl.StringVar(&f.cniBinDir, "cni-bin-dir", "/opt/cni/bin", "the node's CNI plugin directory, as the agent sees it")
	fl.StringVar(&f.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "the node's CNI network configuration directory, as the agent sees it")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":15020", "where to serve the mesh's Prometheus metrics (/metrics); empty: nowhere")
	fl.BoolVar(&f.noMesh, "no-mesh", false, "serve the Workload API only: no CNI plugin, no capture")
	return cmd
}

// agentSettings are the flags checked, with their defaults applied.
type agentSettings struct {
	td          spiffeid.TrustDomain
	node        string
	url         string
	authorityID spiffeid.ID
}

// validate checks the flags, with getenv for the defaults of --node-name
// and --authority-url, before anything is started.
func (f agentFlags) validate(getenv func(string) string) (agentSettings, error) {
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return agentSettings{}, fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)
	}
	node, err := nodeName(f.nodeName, getenv)
	if err != nil {
		return agentSettings{}, err
	}
	addr := f.authorityURL
	if addr == "" {
		host, port := getenv(authorityHostEnv), getenv(authorityPortEnv)
		if host == "" || port == "" {
			return agentSettings{}, fmt.Errorf("--authority-url: empty, and $%s or $%s is not set (kubelet sets them in the pods of the Service kzero-authority's namespace made after it): give the authority's agent API, https://host:port", authorityHostEnv, authorityPortEnv)
		}
		addr = "https://" + net.JoinHostPort(host, port)
	}
	if err := checkAuthorityURL(addr); err != nil {
		return agentSettings{}, fmt.Errorf("--authority-url %q: %w", addr, err)
	}
	id := f.authorityID
	if id == "" {
		id = "spiffe://" + td.Name() + "/ns/" + v1alpha1.Namespace + "/sa/kzero-authority"
	}
	aid, err := spiffeid.FromString(id)
	switch {
	case err != nil:
		return agentSettings{}, fmt.Errorf("--authority-id %q: %w", id, err)
	case !aid.MemberOf(td):
		return agentSettings{}, fmt.Errorf("--authority-id %q: not in --trust-domain %s: the authority's SVID is of its trust domain", id, td.Name())
	case aid.Path() == "":
		return agentSettings{}, fmt.Errorf("--authority-id %q: no path: give the authority's, such as spiffe://%s/ns/%s/sa/kzero-authority", id, td.Name(), v1alpha1.Namespace)
	}
	for _, p := range []struct{ flag, path string }{
		{"--bundle-file", f.bundleFile}, {"--token-file", f.tokenFile}, {"--socket", f.socket},
		{"--cni-binary", f.cniBinary}, {"--cni-bin-dir", f.cniBinDir}, {"--cni-conf-dir", f.cniConfDir},
	} {
		if !filepath.IsAbs(p.path) {
			return agentSettings{}, fmt.Errorf("%s %q: want an absolute path", p.flag, p.path)
		}
	}
	return agentSettings{td: td, node: node, url: addr, authorityID: aid}, nil
}

// nodeName is --node-name, or $NODE_NAME when it is empty, checked.
func nodeName(flag string, getenv func(string) string) (string, error) {
	node := flag
	if node == "" {
		node = getenv(nodeNameEnv)
	}
	switch {
	case node == "":
		return "", fmt.Errorf("--node-name: empty, and no $%s: give this node's name (kzero install's DaemonSet sets %s from spec.nodeName)", nodeNameEnv, nodeNameEnv)
	case len(validation.IsDNS1123Subdomain(node)) > 0:
		return "", fmt.Errorf("--node-name %q: not a node name: %s", node, strings.Join(validation.IsDNS1123Subdomain(node), "; "))
	}
	return node, nil
}

// checkAuthorityURL accepts https://host[:port] and nothing more.
func checkAuthorityURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.Unwrap(err) // url.Error repeats the URL
	case u.Scheme != "https":
		return errors.New("want https://host:port: the agent API is HTTPS only")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("no host: want https://host:port")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errors.New("want https://host:port and nothing more: the agent API's paths are fixed")
	}
	return nil
}

func runAgent(cmd *cobra.Command, f agentFlags) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	set, err := f.validate(os.Getenv)
	if err != nil {
		return err
	}
	cfg, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return err
	}
	kube, err := agent.NewKube(cfg)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("component", "agent")
	acfg := agent.Config{
		NodeName: set.node, TrustDomain: set.td, AuthorityURL: set.url, AuthorityID: set.authorityID,
		BundleFile: f.bundleFile, TokenFile: f.tokenFile, SocketPath: f.socket, Kube: kube, Log: log,
	}
	chain := func() error { return cni.Install(f.cniBinary, f.cniBinDir, f.cniConfDir, nil) }
	if !f.noMesh {
		acfg.Mesh = &agent.MeshConfig{Audit: cmd.OutOrStdout(), MetricsAddr: f.metricsAddr, Chain: chain}
	}
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	if !f.noMesh {
		// Chained before the agent serves the plugin: a pod made in
		// between waits (the plugin finds no agent) and is tried again.
		if err := chain(); err != nil {
			return err
		}
		log.Info("kzero-cni is installed and chained", "binDir", f.cniBinDir, "confDir", f.cniConfDir)
	}
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped")
		return nil
	}
	return err
}

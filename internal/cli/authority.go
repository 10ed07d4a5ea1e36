package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/install"
	"kzero.dev/kzero/internal/kubeconfig"
	"kzero.dev/kzero/internal/kubestore"
	"kzero.dev/kzero/internal/leader"
	"kzero.dev/kzero/internal/run"
)

// authorityFlags are the bootstrap settings of `kzero authority`.
type authorityFlags struct {
	kubeconfig     string
	trustDomain    string
	namespace      string
	secret         string
	lifetime       time.Duration
	identity       string
	webhookAddr    string
	webhookService string
	webhookConfig  string
	webhookIPs     []net.IP
	webhookCA      string
	webhookNames   []string
	bundleAddr     string
	bundleID       string
	agentAddr      string
	agentSVIDTTL   time.Duration
	workloadTTL    time.Duration
	agentSA        string
	agentDaemonSet string
	auditInterval  time.Duration
}

func authorityCommand() *cobra.Command {
	f := authorityFlags{}
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Run the trust domain's certificate authority, PodCertificateRequest signer, pod identity webhook, SPIFFE bundle endpoint and agent API",
		Long: `Runs the trust domain's CA, signs PodCertificateRequests for the signer
kzero.dev/identity, and serves the admission webhook that gives the pods of
enrolled namespaces their identity volume, so that pods get an X.509-SVID
with no sidecar and no change to their manifests; it also serves the trust
bundle to the trust domains that federate with this one, and issues the
SVIDs of the node agents and, through them, of the pods of their node:
  - Replicas elect a leader with the Lease kzero-authority in --namespace
    (--identity names this replica). Only the leader signs, rotates the CA,
    publishes the trust bundle and sets the webhook's caBundle; it reloads
    the CA's state from the Secret when it takes over. Every replica serves
    the webhook, the bundle endpoint and the agent API, and keeps the CA
    loaded read-only.
  - The CA (a root and an issuing intermediate, rotated with overlap) keeps
    its state and keys in a Secret (--namespace, --secret), created on first
    start and only ever updated at the version it read.
  - For each pending PodCertificateRequest it checks, against the API server,
    that the pod exists with that UID, is bound to that node (and the node
    has that UID), runs as that service account (with that UID), in a
    namespace labeled kzero.dev/enrolled=true (never kube-system nor
    --namespace, whatever their labels), and that the pod is not
    terminating. Then it issues
    spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> for
    --lifetime (within the request's maxExpirationSeconds), refreshed at half
    life; otherwise it denies the request with a reason (NotEnrolled,
    PodMismatch, ServiceAccountMismatch, NodeMismatch, UnsupportedKeyType,
    InvalidRequest) and a message saying what to do.
  - It publishes the trust bundle as the ClusterTrustBundle
    kzero.dev:identity:<trust-domain>, and again after every rotation.
  - The webhooks (HTTPS on --webhook-addr): at /mutate-pods it adds to
    every pod created in an enrolled namespace, unless it is annotated
    kzero.dev/inject: "false", a projected volume with its certificate
    (podCertificate) and the trust bundle (clusterTrustBundle), mounted at
    /var/run/secrets/kzero.dev/identity, and the agent's Workload API
    socket; at /validate-pods it refuses pods of enrolled namespaces that
    have a hostPath volume. Its serving certificate, for
    <--webhook-service>.<--namespace>.svc (and .svc.cluster.local), is
    issued by the CA and renewed at half life; the leader keeps the caBundle
    of the Mutating- and ValidatingWebhookConfiguration --webhook-config
    equal to the CA's bundle (kzero install creates them; the authority
    only updates them). With --webhook-client-ca, reviews are read only
    from kube-apiserver (its webhook client certificate); others are
    refused and audited. Without it, every admission event is marked
    unauthenticated.
  - The SPIFFE bundle endpoint (HTTPS on --bundle-addr, path /; empty: off)
    serves the trust bundle to the trust domains that federate with this
    one, per the SPIFFE Federation standard, profile https_spiffe: it
    presents an X.509-SVID for --bundle-id (by default
    spiffe://<trust-domain>/ns/<--namespace>/sa/kzero-authority), issued by
    the CA and renewed at half life. A peer is configured with its URL, that
    SPIFFE ID and, once, the trust bundle.
  - The agent API (HTTPS on --agent-addr, paths /v1/agent/...; empty: off)
    serves the node agents of the DaemonSet --agent-daemonset, which run as
    the service account --agent-service-account, both in --namespace. It
    presents the authority's X.509-SVID
    (spiffe://<trust-domain>/ns/<--namespace>/sa/kzero-authority). An agent
    attests with its pod's projected service account token (audience
    kzero): a TokenReview, then a read of its pod (that UID, a pod of the
    DaemonSet, on the node the token names, not terminating) and it gets
    spiffe://<trust-domain>/kzero/agent/<node> for --agent-svid-ttl. With
    that SVID as its client certificate, it gets the bundle, and the
    X.509-SVIDs (for --workload-svid-ttl) and JWT-SVIDs of the service
    accounts that running pods of its own node run as, in enrolled
    namespaces; anything else, such as a pod of another node, is refused.
  - Every issuance, refusal and admission verdict is an audit event (JSON
    lines on stdout), hash-chained, with a checkpoint signed by the
    authority's own X.509-SVID (spiffe://<trust-domain>/ns/<--namespace>/sa/kzero-authority,
    issued by the CA every replica has loaded) every
    --audit-checkpoint-interval while events arrive, after every 1000
    events, and when it stops: kzero audit verify --stream checks what any
    log pipeline collected. Until the CA is loaded the checkpoints wait.
    Operational logs go to stderr.

It stops on SIGTERM or interrupt, releasing the Lease. The RBAC it needs is
in docs/authority.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuthority(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: $KUBECONFIG, then the in-cluster service account")
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "the SPIFFE trust domain of the identities issued")
	fl.StringVar(&f.namespace, "namespace", kubestore.DefaultNamespace, "namespace of the CA's Secret, of the Lease "+authority.LeaseName+", of the webhook's Service and of the agents' DaemonSet and service account")
	fl.StringVar(&f.secret, "secret", kubestore.DefaultName, "name of the Secret that holds the CA's state")
	fl.DurationVar(&f.lifetime, "lifetime", authority.DefaultLifetime, "lifetime of the certificates issued (at least 1h; cut to each request's maxExpirationSeconds)")
	fl.StringVar(&f.identity, "identity", "", "this replica's name in the leader election, unique among replicas; empty: $POD_NAME, else the hostname")
	fl.StringVar(&f.webhookAddr, "webhook-addr", authority.DefaultWebhookAddr, "host:port the admission webhook listens on (HTTPS)")
	fl.StringVar(&f.webhookService, "webhook-service", authority.DefaultWebhookService, "the Service kube-apiserver calls the webhook through: its DNS names go in the serving certificate")
	fl.StringVar(&f.webhookConfig, "webhook-config", authority.DefaultWebhookConfig, "the Mutating- and ValidatingWebhookConfiguration whose caBundle the leader keeps equal to the CA's bundle")
	fl.StringVar(&f.webhookCA, "webhook-client-ca", "", "PEM file of the CA of the client certificate kube-apiserver presents to admission webhooks (its AdmissionConfiguration): reviews are read only from senders it verifies; empty: every review is read and audited as unauthenticated")
	fl.StringSliceVar(&f.webhookNames, "webhook-client-name", nil, "a name (common name or DNS name) accepted from --webhook-client-ca; repeatable; empty: any certificate it verifies")
	fl.IPSliceVar(&f.webhookIPs, "webhook-ip", nil, "IP addresses to add to the serving certificate, for a webhook reached by URL at an IP (an authority run outside the cluster); repeatable")
	fl.StringVar(&f.bundleAddr, "bundle-addr", authority.DefaultBundleAddr, "host:port the SPIFFE bundle endpoint listens on (HTTPS, profile https_spiffe, for federation); empty: no bundle endpoint")
	fl.StringVar(&f.bundleID, "bundle-id", "", "the SPIFFE ID the bundle endpoint presents, which federating peers are configured with; empty: spiffe://<trust-domain>/ns/<namespace>/sa/"+authority.DefaultBundleServiceAccount)
	fl.StringVar(&f.agentAddr, "agent-addr", authority.DefaultAgentAddr, "host:port the agent API listens on (HTTPS, mTLS after attestation); empty: no agent API")
	fl.DurationVar(&f.agentSVIDTTL, "agent-svid-ttl", authority.DefaultAgentSVIDTTL, "lifetime of the X.509-SVIDs issued to agents on attestation (1m to 24h)")
	fl.DurationVar(&f.workloadTTL, "workload-svid-ttl", authority.DefaultWorkloadSVIDTTL, "lifetime of the X.509-SVIDs issued to agents for the pods of their node (1m to 24h)")
	fl.StringVar(&f.agentSA, "agent-service-account", authority.DefaultAgentServiceAccount, "the service account, in --namespace, whose tokens agents attest with")
	fl.StringVar(&f.agentDaemonSet, "agent-daemonset", authority.DefaultAgentDaemonSet, "the DaemonSet, in --namespace, whose pods are the agents")
	fl.DurationVar(&f.auditInterval, "audit-checkpoint-interval", audit.DefaultCheckpointInterval, "how often the audit stream on stdout gets a signed checkpoint while events arrive; also after every 1000 events, and on shutdown ("+minAuditInterval.String()+" to "+maxAuditInterval.String()+")")
	return cmd
}

// authoritySettings are the flags checked and parsed.
type authoritySettings struct {
	td        spiffeid.TrustDomain
	identity  string
	ips       []netip.Addr
	bundleID  spiffeid.ID    // zero: the default
	clientCAs *x509.CertPool // nil: webhook callers are not authenticated
}

// validate checks the flags before anything reaches the cluster.
func (f authorityFlags) validate(getenv func(string) string, hostname func() (string, error)) (authoritySettings, error) {
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return authoritySettings{}, fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)
	}
	if f.lifetime < authority.MinLifetime || f.lifetime > ca.DefaultX509SVIDMaxTTL {
		return authoritySettings{}, fmt.Errorf("--lifetime %s: must be between %s and %s", f.lifetime, authority.MinLifetime, ca.DefaultX509SVIDMaxTTL)
	}
	if err := checkAddr("--webhook-addr", f.webhookAddr); err != nil {
		return authoritySettings{}, err
	}
	bundleID, err := f.validateBundle(td)
	if err != nil {
		return authoritySettings{}, err
	}
	if err := f.validateAgent(); err != nil {
		return authoritySettings{}, err
	}
	if f.auditInterval < minAuditInterval || f.auditInterval > maxAuditInterval {
		return authoritySettings{}, fmt.Errorf("--audit-checkpoint-interval %s: must be between %s and %s", f.auditInterval, minAuditInterval, maxAuditInterval)
	}
	names := []struct {
		flag, value string
		check       func(string) []string
	}{
		{"--namespace", f.namespace, validation.IsDNS1123Label},
		{"--webhook-service", f.webhookService, validation.IsDNS1123Label},
		{"--webhook-config", f.webhookConfig, validation.IsDNS1123Subdomain},
		{"--agent-service-account", f.agentSA, validation.IsDNS1123Subdomain},
		{"--agent-daemonset", f.agentDaemonSet, validation.IsDNS1123Subdomain},
	}
	for _, n := range names {
		if errs := n.check(n.value); len(errs) > 0 {
			return authoritySettings{}, fmt.Errorf("%s %q: %s", n.flag, n.value, strings.Join(errs, "; "))
		}
	}
	id := f.identity
	if id == "" {
		id = getenv("POD_NAME")
	}
	if id == "" {
		if id, err = hostname(); err != nil {
			return authoritySettings{}, fmt.Errorf("--identity: empty, no $POD_NAME and no hostname: name this replica: %w", err)
		}
		if id == "" {
			return authoritySettings{}, errors.New("--identity: empty, no $POD_NAME and an empty hostname: name this replica")
		}
	}
	set := authoritySettings{td: td, identity: id, bundleID: bundleID}
	if set.clientCAs, err = f.webhookClientCAs(); err != nil {
		return authoritySettings{}, err
	}
	for _, ip := range f.webhookIPs {
		a, _ := netip.AddrFromSlice(ip) // pflag parsed it: 4 or 16 bytes
		set.ips = append(set.ips, a.Unmap())
	}
	return set, nil
}

// webhookClientCAs reads --webhook-client-ca; nil when it is empty.
func (f authorityFlags) webhookClientCAs() (*x509.CertPool, error) {
	if f.webhookCA == "" {
		if len(f.webhookNames) > 0 {
			return nil, errors.New("--webhook-client-name: given without --webhook-client-ca: name the CA whose certificates carry it")
		}
		return nil, nil
	}
	data, err := readSmallFile(f.webhookCA, maxCAFile, "a file of CA certificates")
	if err != nil {
		return nil, fmt.Errorf("--webhook-client-ca: %w", err)
	}
	cas, err := install.ParseCAs(data)
	if err != nil {
		return nil, fmt.Errorf("--webhook-client-ca %s: %w", f.webhookCA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool, nil
}

// checkAddr checks a listen address flag: host:port or :port, the port a
// number.
func checkAddr(flag, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s %q: want host:port or :port: %w", flag, addr, err)
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%s %q: the port must be a number from 1 to 65535", flag, addr)
	}
	return nil
}

// validateBundle checks --bundle-addr and --bundle-id; it returns the ID,
// zero for the default.
func (f authorityFlags) validateBundle(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if f.bundleAddr == "" {
		if f.bundleID != "" {
			return spiffeid.ID{}, fmt.Errorf("--bundle-id %q: the bundle endpoint is off (--bundle-addr is empty): give --bundle-addr too, or drop --bundle-id", f.bundleID)
		}
		return spiffeid.ID{}, nil
	}
	if err := checkAddr("--bundle-addr", f.bundleAddr); err != nil {
		return spiffeid.ID{}, err
	}
	if sameListener(f.bundleAddr, f.webhookAddr) {
		return spiffeid.ID{}, fmt.Errorf("--bundle-addr %q: the webhook listens there (--webhook-addr %q): give the bundle endpoint its own port", f.bundleAddr, f.webhookAddr)
	}
	if f.bundleID == "" {
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(f.bundleID)
	switch {
	case err != nil:
		return spiffeid.ID{}, fmt.Errorf("--bundle-id %q: %w", f.bundleID, err)
	case !id.MemberOf(td):
		return spiffeid.ID{}, fmt.Errorf("--bundle-id %q: not in --trust-domain %s: the CA issues SVIDs only in its own trust domain", f.bundleID, td.Name())
	case id.Path() == "":
		return spiffeid.ID{}, fmt.Errorf("--bundle-id %q: no path: name the endpoint, such as %s/ns/%s/sa/%s", f.bundleID, id, f.namespace, authority.DefaultBundleServiceAccount)
	}
	return id, nil
}

// sameListener reports whether two checked listen addresses would clash:
// the same port on the same host, or on every host.
func sameListener(a, b string) bool {
	ah, ap, _ := net.SplitHostPort(a)
	bh, bp, _ := net.SplitHostPort(b)
	return ap == bp && (ah == bh || ah == "" || bh == "")
}

// validateAgent checks --agent-addr and the lifetimes of the agent API.
func (f authorityFlags) validateAgent() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--agent-svid-ttl", f.agentSVIDTTL}, {"--workload-svid-ttl", f.workloadTTL}} {
		if d.v < authority.MinAgentAPITTL || d.v > authority.MaxAgentAPITTL {
			return fmt.Errorf("%s %s: must be between %s and %s", d.flag, d.v, authority.MinAgentAPITTL, authority.MaxAgentAPITTL)
		}
	}
	if f.agentAddr == "" {
		return nil
	}
	if err := checkAddr("--agent-addr", f.agentAddr); err != nil {
		return err
	}
	if sameListener(f.agentAddr, f.webhookAddr) {
		return fmt.Errorf("--agent-addr %q: the webhook listens there (--webhook-addr %q): give the agent API its own port", f.agentAddr, f.webhookAddr)
	}
	if f.bundleAddr != "" && sameListener(f.agentAddr, f.bundleAddr) {
		return fmt.Errorf("--agent-addr %q: the bundle endpoint listens there (--bundle-addr %q): give the agent API its own port", f.agentAddr, f.bundleAddr)
	}
	return nil
}

func runAuthority(cmd *cobra.Command, f authorityFlags) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	set, err := f.validate(os.Getenv, os.Hostname)
	if err != nil {
		return err
	}
	cfg, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return err
	}
	// client-go's default of 5 requests/s would cap signing at 5 pods/s;
	// kube-apiserver's priority and fairness protects itself.
	cfg.QPS, cfg.Burst = authority.ClientQPS, authority.ClientBurst
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("component", "authority", "identity", set.identity)
	store, err := kubestore.New(client.CoreV1(), f.namespace, f.secret)
	if err != nil {
		return err
	}
	// The audit trail's SVID comes from the replica's CA; the replica,
	// made below, is set before anything runs.
	var r *authority.Replica
	svids, err := authority.NewAuditSVID(authority.AuditSVIDConfig{TrustDomain: set.td, Namespace: f.namespace, Log: log,
		CA: func() *ca.CA {
			if r == nil {
				return nil
			}
			return r.CA()
		}})
	if err != nil {
		return err
	}
	rec, err := newAuditTrail(cmd.OutOrStdout(), audit.ComponentAuthority, svids, f.auditInterval, log)
	if err != nil {
		return err
	}
	defer rec.Close()
	r, err = authority.NewReplica(authority.ReplicaConfig{
		Client: client, TrustDomain: set.td, Store: store, Audit: rec, Log: log, Lifetime: f.lifetime,
		Election: leader.Config{Namespace: f.namespace, Identity: set.identity},
		Webhook: authority.WebhookConfig{Addr: f.webhookAddr, Service: f.webhookService, Namespace: f.namespace,
			IPs: set.ips, ClientCAs: set.clientCAs, ClientNames: f.webhookNames},
		WebhookConfig: f.webhookConfig,
	})
	if err != nil {
		return err
	}
	runs := []func(context.Context) error{r.Run, rec.Run}
	bundleID := "off"
	if f.bundleAddr != "" {
		be, err := authority.NewBundleEndpoint(authority.BundleEndpointConfig{
			Addr: f.bundleAddr, TrustDomain: set.td, ID: set.bundleID, Namespace: f.namespace, Log: log,
			CA: func() authority.BundleCA {
				if c := r.CA(); c != nil {
					return c
				}
				return nil
			},
		})
		if err != nil {
			return err
		}
		runs, bundleID = append(runs, be.Run), be.ID().String()
	}
	if f.agentAddr != "" {
		cached, err := authority.NewCachedCluster(client)
		if err != nil {
			return err
		}
		api, err := authority.NewAgentAPI(authority.AgentAPIConfig{
			Addr: f.agentAddr, TrustDomain: set.td, Namespace: f.namespace,
			CA: func() authority.AgentCA {
				if c := r.CA(); c != nil {
					return c
				}
				return nil
			},
			Tokens: client.AuthenticationV1().TokenReviews(), Cluster: authority.LiveCluster{Client: client}, Cache: cached,
			ServiceAccount: f.agentSA, DaemonSet: f.agentDaemonSet,
			AgentSVIDTTL: f.agentSVIDTTL, WorkloadSVIDTTL: f.workloadTTL,
			Audit: rec, Log: log,
		})
		if err != nil {
			return err
		}
		runs = append(runs, cached.Run, api.Run)
	}
	log.Info("starting", "trustDomain", set.td.Name(), "store", store.String(), "clusterTrustBundle", v1alpha1.TrustBundleName(set.td.Name()),
		"lease", f.namespace+"/"+authority.LeaseName, "webhookAddr", f.webhookAddr, "webhookConfig", f.webhookConfig,
		"bundleAddr", f.bundleAddr, "bundleEndpointID", bundleID, "agentAddr", f.agentAddr, "auditCheckpointInterval", f.auditInterval.String())
	err = run.All(ctx, runs...)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped")
		return nil
	}
	return err
}

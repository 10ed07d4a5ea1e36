package cli

import (
	"context"
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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/kubestore"
	"kzero.dev/kzero/internal/leader"
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
}

func authorityCommand() *cobra.Command {
	f := authorityFlags{}
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Run the trust domain's certificate authority, PodCertificateRequest signer and pod identity webhook",
		Long: `Runs the trust domain's CA, signs PodCertificateRequests for the signer
kzero.dev/identity, and serves the admission webhook that gives the pods of
enrolled namespaces their identity volume, so that pods get an X.509-SVID
with no sidecar and no change to their manifests:
  - Replicas elect a leader with the Lease kzero-authority in --namespace
    (--identity names this replica). Only the leader signs, rotates the CA,
    publishes the trust bundle and sets the webhook's caBundle; it reloads
    the CA's state from the Secret when it takes over. Every replica serves
    the webhook and keeps the CA loaded read-only.
  - The CA (a root and an issuing intermediate, rotated with overlap) keeps
    its state and keys in a Secret (--namespace, --secret), created on first
    start and only ever updated at the version it read.
  - For each pending PodCertificateRequest it checks, against the API server,
    that the pod exists with that UID, is bound to that node (and the node
    has that UID), runs as that service account (with that UID), in a
    namespace labeled kzero.dev/enrolled=true. Then it issues
    spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> for
    --lifetime (within the request's maxExpirationSeconds), refreshed at half
    life; otherwise it denies the request with a reason (NotEnrolled,
    PodMismatch, ServiceAccountMismatch, NodeMismatch, UnsupportedKeyType,
    InvalidRequest) and a message saying what to do.
  - It publishes the trust bundle as the ClusterTrustBundle
    kzero.dev:identity:<trust-domain>, and again after every rotation.
  - The webhook (HTTPS on --webhook-addr, path /mutate-pods) adds to every pod
    created in an enrolled namespace, unless it is annotated
    kzero.dev/inject: "false", a projected volume with its certificate
    (podCertificate) and the trust bundle (clusterTrustBundle), mounted at
    /var/run/secrets/kzero.dev/identity. Its serving certificate, for
    <--webhook-service>.<--namespace>.svc (and .svc.cluster.local), is
    issued by the CA and renewed at half life; the leader keeps the caBundle
    of the MutatingWebhookConfiguration --webhook-config equal to the CA's
    bundle (kzero install creates it; the authority only updates it).
  - Every issuance, refusal and admission verdict is an audit event (JSON
    lines on stdout); operational logs go to stderr.

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
	fl.StringVar(&f.namespace, "namespace", kubestore.DefaultNamespace, "namespace of the CA's Secret, of the Lease "+authority.LeaseName+" and of the webhook's Service")
	fl.StringVar(&f.secret, "secret", kubestore.DefaultName, "name of the Secret that holds the CA's state")
	fl.DurationVar(&f.lifetime, "lifetime", authority.DefaultLifetime, "lifetime of the certificates issued (at least 1h; cut to each request's maxExpirationSeconds)")
	fl.StringVar(&f.identity, "identity", "", "this replica's name in the leader election, unique among replicas; empty: $POD_NAME, else the hostname")
	fl.StringVar(&f.webhookAddr, "webhook-addr", authority.DefaultWebhookAddr, "host:port the admission webhook listens on (HTTPS)")
	fl.StringVar(&f.webhookService, "webhook-service", authority.DefaultWebhookService, "the Service kube-apiserver calls the webhook through: its DNS names go in the serving certificate")
	fl.StringVar(&f.webhookConfig, "webhook-config", authority.DefaultWebhookConfig, "the MutatingWebhookConfiguration whose caBundle the leader keeps equal to the CA's bundle")
	fl.IPSliceVar(&f.webhookIPs, "webhook-ip", nil, "IP addresses to add to the serving certificate, for a webhook reached by URL at an IP (an authority run outside the cluster); repeatable")
	return cmd
}

// authoritySettings are the flags checked and parsed.
type authoritySettings struct {
	td       spiffeid.TrustDomain
	identity string
	ips      []netip.Addr
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
	if _, port, err := net.SplitHostPort(f.webhookAddr); err != nil {
		return authoritySettings{}, fmt.Errorf("--webhook-addr %q: want host:port or :port: %w", f.webhookAddr, err)
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return authoritySettings{}, fmt.Errorf("--webhook-addr %q: the port must be a number from 1 to 65535", f.webhookAddr)
	}
	names := []struct {
		flag, value string
		check       func(string) []string
	}{
		{"--namespace", f.namespace, validation.IsDNS1123Label},
		{"--webhook-service", f.webhookService, validation.IsDNS1123Label},
		{"--webhook-config", f.webhookConfig, validation.IsDNS1123Subdomain},
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
	set := authoritySettings{td: td, identity: id}
	for _, ip := range f.webhookIPs {
		a, _ := netip.AddrFromSlice(ip) // pflag parsed it: 4 or 16 bytes
		set.ips = append(set.ips, a.Unmap())
	}
	return set, nil
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
	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("component", "authority", "identity", set.identity)
	store, err := kubestore.New(client.CoreV1(), f.namespace, f.secret)
	if err != nil {
		return err
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: cmd.OutOrStdout()})
	if err != nil {
		return err
	}
	defer func() { _ = rec.Close() }()
	r, err := authority.NewReplica(authority.ReplicaConfig{
		Client: client, TrustDomain: set.td, Store: store, Audit: rec, Log: log, Lifetime: f.lifetime,
		Election: leader.Config{Namespace: f.namespace, Identity: set.identity},
		Webhook: authority.WebhookConfig{Addr: f.webhookAddr, Service: f.webhookService, Namespace: f.namespace,
			IPs: set.ips},
		WebhookConfig: f.webhookConfig,
	})
	if err != nil {
		return err
	}
	log.Info("starting", "trustDomain", set.td.Name(), "store", store.String(), "clusterTrustBundle", authority.BundleName(set.td.Name()),
		"lease", f.namespace+"/"+authority.LeaseName, "webhookAddr", f.webhookAddr, "webhookConfig", f.webhookConfig)
	err = r.Run(ctx)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped")
		return nil
	}
	return err
}

// restConfig loads the kubeconfig named, else $KUBECONFIG, else the
// in-cluster configuration.
func restConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" {
		if in, inErr := rest.InClusterConfig(); inErr == nil {
			return in, nil
		}
	}
	return nil, fmt.Errorf("no Kubernetes configuration: give --kubeconfig, set KUBECONFIG, or run in a pod with a service account: %w", err)
}

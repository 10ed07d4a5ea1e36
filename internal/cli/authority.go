package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/authority"
	"kzero.dev/kzero/internal/ca"
	"kzero.dev/kzero/internal/kubestore"
)

// authorityFlags are the bootstrap settings of `kzero authority`.
type authorityFlags struct {
	kubeconfig  string
	trustDomain string
	namespace   string
	secret      string
	lifetime    time.Duration
}

func authorityCommand() *cobra.Command {
	f := authorityFlags{}
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Run the trust domain's certificate authority and PodCertificateRequest signer",
		Long: `Runs the trust domain's CA and signs PodCertificateRequests for the signer
kzero.dev/identity, so that pods get an X.509-SVID with no sidecar:

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
  - Every issuance and refusal is an audit event (JSON lines on stdout);
    operational logs go to stderr.

Pods ask for an identity with a projected volume source:
  podCertificate: {signerName: kzero.dev/identity, keyType: ECDSAP256,
                   credentialBundlePath: credentialbundle.pem}

Run one replica for now: a second would refuse to write the CA's Secret
after the first changed it (leader election is not built yet). It stops on
SIGTERM or interrupt. The RBAC it needs is in docs/authority.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuthority(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: $KUBECONFIG, then the in-cluster service account")
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "the SPIFFE trust domain of the identities issued")
	fl.StringVar(&f.namespace, "namespace", kubestore.DefaultNamespace, "namespace of the Secret that holds the CA's state")
	fl.StringVar(&f.secret, "secret", kubestore.DefaultName, "name of the Secret that holds the CA's state")
	fl.DurationVar(&f.lifetime, "lifetime", authority.DefaultLifetime, "lifetime of the certificates issued (at least 1h; cut to each request's maxExpirationSeconds)")
	return cmd
}

func runAuthority(cmd *cobra.Command, f authorityFlags) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)
	}
	if f.lifetime < authority.MinLifetime || f.lifetime > ca.DefaultX509SVIDMaxTTL {
		return fmt.Errorf("--lifetime %s: must be between %s and %s", f.lifetime, authority.MinLifetime, ca.DefaultX509SVIDMaxTTL)
	}
	cfg, err := restConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("component", "authority")
	store, err := kubestore.New(client.CoreV1(), f.namespace, f.secret)
	if err != nil {
		return err
	}
	c, err := ca.New(ctx, ca.Config{TrustDomain: td, Store: store})
	if err != nil {
		return err
	}
	rec, err := audit.NewRecorder(audit.Config{Component: audit.ComponentAuthority, Out: cmd.OutOrStdout()})
	if err != nil {
		return err
	}
	defer func() { _ = rec.Close() }()
	a, err := authority.New(authority.Config{Client: client, CA: c, TrustDomain: td, Audit: rec, Log: log, Lifetime: f.lifetime})
	if err != nil {
		return err
	}
	log.Info("starting", "trustDomain", td.Name(), "store", store.String(), "clusterTrustBundle", authority.BundleName(td.Name()))
	err = a.Run(ctx)
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

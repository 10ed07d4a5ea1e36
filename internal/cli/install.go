package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/install"
)

func installCommand() *cobra.Command {
	var o install.Options
	var pull, clientCA string
	c := &cobra.Command{
		Use:   "install --image IMAGE",
		Short: "Render the manifests that install kzero",
		Long: `Prints the manifests that install kzero into a cluster, to apply with
kubectl apply -f -: the namespace (kzero-system), the AccessPolicy CRD, the
authority's service account and least-privilege RBAC (docs/authority.md),
its Deployment (two replicas, one leader), Service and
PodDisruptionBudget, the node agent's RBAC, CSIDriver and DaemonSet, the
mutating webhook that gives pods of enrolled namespaces (label
kzero.dev/enrolled=true) their identity volume and the agent's Workload API
socket (a read-only CSI inline volume of the agent's driver), and the
validating webhook that refuses hostPath volumes there. The webhooks never
see kube-system, kzero's namespace or namespaces that are not enrolled.
--kubelet-dir must be kubelet's root directory on the nodes (its
--root-dir): the agent mounts the pods' volumes and registers its CSI
driver there. --cni-bin-dir and --cni-conf-dir must be the nodes' CNI
directories (the container runtime's): the agent installs its chained
plugin, kzero-cni, in the first and chains it after the pod network's
plugin in the first .conflist of the second, so that it captures the pods
of enrolled namespaces before their containers start (docs/mesh.md).

With --webhook-client-ca, the webhooks read reviews only from
kube-apiserver: give the CA of the client certificate kube-apiserver
presents to admission webhooks (its --admission-control-config-file;
docs/install.md). Without it, anyone who reaches the webhooks can send
them reviews, and their audit events are marked unauthenticated.`,
		Example: "  kzero install --image registry.example/kzero:v0.1.0 | kubectl apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.PullPolicy = corev1.PullPolicy(pull)
			if clientCA != "" {
				var err error
				if o.WebhookClientCA, err = readSmallFile(clientCA, maxCAFile, "a file of CA certificates"); err != nil {
					return fmt.Errorf("--webhook-client-ca: %w", err)
				}
			}
			out, err := install.Render(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&o.Image, "image", "", "the kzero image (required)")
	f.StringVar(&o.Namespace, "namespace", v1alpha1.Namespace, "the namespace kzero runs in")
	f.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "the cluster's SPIFFE trust domain")
	f.Int32Var(&o.Replicas, "replicas", 2, "replicas of the authority (one leads)")
	f.StringVar(&pull, "pull-policy", string(corev1.PullIfNotPresent), "the image pull policy: Always, IfNotPresent or Never")
	f.StringVar(&o.KubeletDir, "kubelet-dir", v1alpha1.KubeletDir, "kubelet's root directory on the nodes (kubelet's --root-dir)")
	f.StringVar(&o.CNIBinDir, "cni-bin-dir", install.DefaultCNIBinDir, "the nodes' CNI plugin directory (the container runtime's), where the agent installs kzero-cni")
	f.StringVar(&o.CNIConfDir, "cni-conf-dir", install.DefaultCNIConfDir, "the nodes' CNI network configuration directory, whose first .conflist the agent chains kzero-cni into")
	f.StringVar(&clientCA, "webhook-client-ca", "", "PEM file of the CA of the client certificate kube-apiserver presents to admission webhooks; empty: the webhooks do not authenticate kube-apiserver")
	f.StringSliceVar(&o.WebhookClientNames, "webhook-client-name", nil, "a name (common name or DNS name) of kube-apiserver's webhook client certificate to accept; repeatable; empty: any certificate of --webhook-client-ca")
	return c
}

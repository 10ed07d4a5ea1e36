package cli

import (
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/install"
)

func installCommand() *cobra.Command {
	var o install.Options
	var pull string
	c := &cobra.Command{
		Use:   "install --image IMAGE",
		Short: "Render the manifests that install kzero",
		Long: `Prints the manifests that install kzero into a cluster, to apply with
kubectl apply -f -: the namespace (kzero-system), the AccessPolicy CRD, the
authority's service account and least-privilege RBAC (docs/authority.md),
its Deployment (two replicas, one leader), Service and
PodDisruptionBudget, the node agent's RBAC, CSIDriver and DaemonSet, and the
mutating webhook that gives pods of enrolled namespaces (label
kzero.dev/enrolled=true) their identity volume and the agent's Workload API
socket (a read-only CSI inline volume of the agent's driver). The webhook
never sees kube-system or namespaces that are not enrolled. --kubelet-dir
must be kubelet's root directory on the nodes (its --root-dir): the agent
mounts the pods' volumes and registers its CSI driver there.`,
		Example: "  kzero install --image registry.example/kzero:v0.1.0 | kubectl apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.PullPolicy = corev1.PullPolicy(pull)
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
	return c
}

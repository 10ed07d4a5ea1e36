// Package install renders the manifests that install kzero into a
// cluster: its namespace, the AccessPolicy CRD, the authority's service
// account and least-privilege RBAC, its Deployment (two replicas, one
// leader), Service, PodDisruptionBudget, the node agent's service account,
// RBAC, CSIDriver and DaemonSet, and the mutating webhook that gives pods
// of enrolled namespaces their identity and the agent's Workload API
// socket.
// `kzero install` prints them.
package install

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/agentapi"
	"kzero.dev/kzero/internal/cni"
)

// Names of what the manifests create.
const (
	Name       = "kzero-authority"
	SecretName = "kzero-ca"
	// WebhookConfig names the MutatingWebhookConfiguration and the
	// ValidatingWebhookConfiguration alike.
	WebhookConfig = "kzero-pod-identity"
	WebhookPath   = "/mutate-pods"
	// ValidatingWebhookPath is the pod admission webhook's path.
	ValidatingWebhookPath = "/validate-pods"
	WebhookPort           = 8443
	BundlePort            = 8444 // the SPIFFE bundle endpoint, for federation
	SignerName            = v1alpha1.SignerName
	EnrolledLabel         = v1alpha1.EnrolledLabel

	// AgentName names the node agent's DaemonSet, service account and
	// ClusterRole.
	AgentName = "kzero-agent"
	// AgentBinary is the agent's binary in kzero's image, beside /kzero
	// (the image's entrypoint, which the authority runs).
	AgentBinary = "/kzero-agent"
	// CNIBinary is kzero's chained CNI plugin in the image, which the agent
	// copies into the nodes' CNI bin directory.
	CNIBinary = "/kzero-cni"
	// DefaultCNIBinDir and DefaultCNIConfDir are where nodes usually keep
	// their CNI plugins and network configuration.
	DefaultCNIBinDir  = "/opt/cni/bin"
	DefaultCNIConfDir = "/etc/cni/net.d"
	// The agent's container sees the nodes' CNI directories here.
	agentCNIBinDir  = "/host/cni/bin"
	agentCNIConfDir = "/host/cni/net.d"
	// AgentMetricsPort serves the agent's Prometheus metrics (the mesh's
	// connections, bytes, decisions and tunnel opening times).
	AgentMetricsPort = 15020
	// AgentPort is the authority's port for agents, named "agent" on its
	// Deployment and Service (the agent finds it in the Service's
	// environment variable KZERO_AUTHORITY_SERVICE_PORT_AGENT).
	AgentPort = agentapi.DefaultPort
	// AgentAuthorityDir is where the agent finds what it attests with:
	// AgentTokenFile, a service account token for agentapi.TokenAudience, and
	// AgentBundleFile, the trust domain's CAs that verify the authority.
	AgentAuthorityDir = "/var/run/secrets/kzero.dev/authority"
	AgentTokenFile    = "token"
	AgentBundleFile   = "bundle.pem"
	// AgentTokenSeconds is the lifetime asked for the agent's token, the
	// shortest the API server allows; kubelet renews it at 80%.
	AgentTokenSeconds = 600

	// WebhookClientCAConfigMap holds, under WebhookClientCAKey, the CA of
	// the client certificate kube-apiserver presents to admission
	// webhooks, mounted into the authority at WebhookClientCADir.
	WebhookClientCAConfigMap = "kzero-webhook-client-ca"
	WebhookClientCAKey       = "ca.crt"
	WebhookClientCADir       = "/etc/kzero/webhook-client-ca"
)

// Options choose what to install. The zero value of a field means its
// default, except Image, which is required.
type Options struct {
	// Image of kzero, such as registry.example/kzero:v0.1.0: /kzero, its
	// entrypoint, and AgentBinary. Required.
	Image string
	// Namespace for kzero itself; kzero-system by default.
	Namespace string
	// TrustDomain of the cluster; cluster.local by default.
	TrustDomain string
	// Replicas of the authority; 2 by default (one leads).
	Replicas int32
	// PullPolicy of the image; IfNotPresent by default.
	PullPolicy corev1.PullPolicy
	// WebhookClientCA is the CA (PEM) of the client certificate
	// kube-apiserver presents to admission webhooks (its
	// AdmissionConfiguration; docs/install.md): with it the webhooks read
	// reviews only from kube-apiserver. Empty: they read every review and
	// mark its audit event unauthenticated.
	WebhookClientCA []byte
	// WebhookClientNames are the names (common name or DNS name) accepted
	// from WebhookClientCA; empty: any certificate it issued.
	WebhookClientNames []string
	// KubeletDir is kubelet's root directory on the nodes (kubelet's
	// --root-dir); /var/lib/kubelet by default. The agent's CSI driver
	// mounts pods' volumes under it and registers with kubelet there.
	KubeletDir string
	// CNIBinDir and CNIConfDir are the nodes' CNI directories, where the
	// agent installs its chained plugin and chains it after the pod
	// network's; /opt/cni/bin and /etc/cni/net.d by default.
	CNIBinDir, CNIConfDir string
}

func (o *Options) defaults() error {
	if o.Namespace == "" {
		o.Namespace = v1alpha1.Namespace
	}
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
	if o.KubeletDir == "" {
		o.KubeletDir = v1alpha1.KubeletDir
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = DefaultCNIBinDir
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = DefaultCNIConfDir
	}
	var errs []error
	for _, d := range []struct{ field, path string }{{"cniBinDir", o.CNIBinDir}, {"cniConfDir", o.CNIConfDir}} {
		if !filepath.IsAbs(d.path) || filepath.Clean(d.path) != d.path {
			errs = append(errs, fmt.Errorf("%s: %q: want a clean absolute path on the nodes", d.field, d.path))
		}
	}
	if o.Image == "" {
		errs = append(errs, errors.New("image: required: name the kzero image to run, such as registry.example/kzero:v0.1.0"))
	}
	if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace: %q: %v", o.Namespace, msgs))
	}
	if _, err := spiffeid.TrustDomainFromString(o.TrustDomain); err != nil {
		errs = append(errs, fmt.Errorf("trustDomain: %q: %w", o.TrustDomain, err))
	}
	if o.Replicas < 1 {
		errs = append(errs, fmt.Errorf("replicas: %d: at least 1", o.Replicas))
	}
	switch o.PullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("pullPolicy: %q is not Always, IfNotPresent or Never", o.PullPolicy))
	}
	if len(o.WebhookClientCA) > 0 {
		if _, err := ParseCAs(o.WebhookClientCA); err != nil {
			errs = append(errs, fmt.Errorf("webhookClientCA: %w", err))
		}
	} else if len(o.WebhookClientNames) > 0 {
		errs = append(errs, errors.New("webhookClientNames: given without webhookClientCA: name the CA whose certificates carry them"))
	}
	if !filepath.IsAbs(o.KubeletDir) || filepath.Clean(o.KubeletDir) != o.KubeletDir || o.KubeletDir == "/" {
		errs = append(errs, fmt.Errorf("kubeletDir: %q: want kubelet's root directory on the nodes (its --root-dir), an absolute, clean path such as %s", o.KubeletDir, v1alpha1.KubeletDir))
	}
	if len(errs) > 0 {
		return fmt.Errorf("install: %w", errors.Join(errs...))
	}
	return nil
}

// Render returns the manifests as one multi-document YAML stream, in the
// order they can be applied.
func Render(o Options) ([]byte, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString("# kzero: rendered by `kzero install`; apply with kubectl apply -f -\n")
	docs := []any{namespace(o)}
	if len(o.WebhookClientCA) > 0 {
		docs = append(docs, webhookClientCA(o))
	}
	for i, obj := range docs {
		if err := write(&out, obj, i > 0); err != nil {
			return nil, err
		}
	}
	out.WriteString("---\n")
	out.Write(bytes.TrimSpace(v1alpha1.CRD))
	out.WriteString("\n")
	for _, obj := range []any{
		serviceAccount(o), clusterRole(), clusterRoleBinding(o), role(o), roleBinding(o),
		deployment(o), service(o), podDisruptionBudget(o),
		agentServiceAccount(o), agentClusterRole(), agentClusterRoleBinding(o), CSIDriver(), daemonSet(o),
		webhook(o), validatingWebhook(o),
	} {
		if err := write(&out, obj, true); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

func write(out *bytes.Buffer, obj any, sep bool) error {
	doc, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if sep {
		out.WriteString("---\n")
	}
	out.Write(doc)
	return nil
}

// Components, as the label app.kubernetes.io/component names them. Each
// selector names its component, so that the authority's Service and
// PodDisruptionBudget never select the agent's pods.
const (
	authority = "authority"
	agent     = "agent"
)

func labels(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "kzero", "app.kubernetes.io/component": component}
}

func meta(name, ns, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(component)}
}

// namespace is kzero's namespace. Its Pod Security level is privileged:
// the agent's pods run privileged, in the host's PID namespace, with
// hostPath volumes, all of which the baseline level already refuses. The
// authority's pods meet the restricted level all the same (see
// deployment).
func namespace(o Options) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: map[string]string{
			"app.kubernetes.io/name":             "kzero",
			"pod-security.kubernetes.io/enforce": "privileged",
		}},
	}
}

func serviceAccount(o Options) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(Name, o.Namespace, authority)}
}

// ClusterRules is what the authority does cluster-wide, verb by verb; see
// docs/authority.md for why each rule is there. The e2e tests run the
// authority under exactly these rules and NamespaceRules.
func ClusterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"podcertificaterequests"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"podcertificaterequests/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{SignerName}, Verbs: []string{"sign", "attest"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "serviceaccounts", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
			ResourceNames: []string{WebhookConfig}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	}
}

func clusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(Name, "", authority),
		Rules:      ClusterRules(),
	}
}

func clusterRoleBinding(o Options) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(Name, "", authority),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: o.Namespace}},
	}
}

// NamespaceRules is what the authority does in its own namespace: its CA's
// Secret and its leader Lease, by name wherever Kubernetes allows (not for
// create).
func NamespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{SecretName}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{Name}, Verbs: []string{"get", "update"}},
	}
}

func role(o Options) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: meta(Name, o.Namespace, authority),
		Rules:      NamespaceRules(),
	}
}

func roleBinding(o Options) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta(Name, o.Namespace, authority),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: o.Namespace}},
	}
}

func deployment(o Options) *appsv1.Deployment {
	yes, no := true, false
	uid := int64(65532)
	args := []string{"authority", "--trust-domain", o.TrustDomain, "--namespace", o.Namespace,
		"--secret", SecretName, "--webhook-addr", fmt.Sprintf(":%d", WebhookPort),
		"--bundle-addr", fmt.Sprintf(":%d", BundlePort), "--agent-addr", fmt.Sprintf(":%d", AgentPort)}
	var mounts []corev1.VolumeMount
	var volumes []corev1.Volume
	if len(o.WebhookClientCA) > 0 {
		args = append(args, "--webhook-client-ca", WebhookClientCADir+"/"+WebhookClientCAKey)
		for _, n := range o.WebhookClientNames {
			args = append(args, "--webhook-client-name", n)
		}
		mounts = append(mounts, corev1.VolumeMount{Name: "webhook-client-ca", MountPath: WebhookClientCADir, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "webhook-client-ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: WebhookClientCAConfigMap}}}})
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(Name, o.Namespace, authority),
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels(authority)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(authority)},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "authority", Image: o.Image, ImagePullPolicy: o.PullPolicy,
						Args: args, VolumeMounts: mounts,
						Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						Ports: []corev1.ContainerPort{{Name: "webhook", ContainerPort: WebhookPort}, {Name: "bundle", ContainerPort: BundlePort},
							{Name: "agent", ContainerPort: AgentPort}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("webhook")}},
							PeriodSeconds: 5},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
					Volumes: volumes,
				},
			},
		},
	}
}

// webhookClientCA is the ConfigMap of the CA of kube-apiserver's webhook
// client certificate: a CA certificate is public.
func webhookClientCA(o Options) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(WebhookClientCAConfigMap, o.Namespace, authority),
		Data:       map[string]string{WebhookClientCAKey: string(o.WebhookClientCA)},
	}
}

// ParseCAs parses PEM that holds CA certificates, and only them: the
// webhook client CA, as kzero install and kzero authority read it.
func ParseCAs(pemData []byte) ([]*x509.Certificate, error) {
	rest := bytes.TrimSpace(pemData)
	var cas []*x509.Certificate
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("not PEM: give the CA certificate(s) in PEM")
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q: give only CA certificates", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", len(cas)+1, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate: give the CA that issued kube-apiserver's webhook client certificate", len(cas)+1, c.Subject)
		}
		cas = append(cas, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(cas) == 0 {
		return nil, errors.New("empty: give the CA certificate(s) in PEM")
	}
	return cas, nil
}

func service(o Options) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(Name, o.Namespace, authority),
		Spec: corev1.ServiceSpec{Selector: labels(authority),
			Ports: []corev1.ServicePort{
				{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook")},
				{Name: "spiffe-bundle", Port: BundlePort, TargetPort: intstr.FromString("bundle")},
				{Name: "agent", Port: AgentPort, TargetPort: intstr.FromString("agent")},
			}},
	}
}

func podDisruptionBudget(o Options) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: meta(Name, o.Namespace, authority),
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels(authority)}},
	}
}

func agentServiceAccount(o Options) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(AgentName, o.Namespace, agent)}
}

// AgentRules is what the node agent does with the API, verb by verb: it
// watches the pods of its node (a field selector on spec.nodeName, which
// RBAC cannot narrow: the rule allows every pod) to attest the callers of
// its Workload API, and the namespaces to know which are enrolled; for the
// mesh, the pods, Services and EndpointSlices of the cluster, to know
// where a pod's connection leads and whom it must reach there, and the
// AccessPolicies, to decide. It reads no Secret and writes nothing; what
// it needs of the authority it asks over the agent API, with its own
// token. See docs/install.md.
func AgentRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "services"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{v1alpha1.Group}, Resources: []string{v1alpha1.Resource}, Verbs: []string{"get", "list", "watch"}},
		// The trust domain's ClusterTrustBundle, read from the API server
		// as well as from kubelet's projection, which may lag minutes.
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, Verbs: []string{"get", "list", "watch"}},
	}
}

func agentClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(AgentName, "", agent),
		Rules:      AgentRules(),
	}
}

func agentClusterRoleBinding(o Options) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(AgentName, "", agent),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: AgentName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: AgentName, Namespace: o.Namespace}},
	}
}

// daemonSet runs kzero agent on every node, in two containers: the agent,
// which serves the Workload API to every pod of the node and carries the
// enrolled pods' connections, with the few capabilities that takes, and
// its CSI driver, which alone is privileged.
// What each is given, and why (docs/install.md says it for a person):
//
//   - hostPID (the pod's): the kernel gives the PID of a caller on the
//     socket (SO_PEERCRED) in the agent's PID namespace; only in the
//     host's are other pods' processes, and their /proc/<pid>/cgroup,
//     visible.
//   - the agent: user 0 (root owns the node's directory of the socket),
//     read-only root filesystem, no privilege escalation, and of the
//     capabilities only NET_ADMIN (the capture rules in each enrolled
//     pod's network namespace), SYS_ADMIN (setns(2) into that namespace,
//     to open the pod's listeners and its tunnel's connections) and
//     SYS_PTRACE (opening /proc/<pid>/ns/net of a pod's process, to bring
//     in the pods that ran before the agent); the node's directory
//     v1alpha1.WorkloadAPIDir, read-write, for the socket; the node's CNI
//     bin and configuration directories, read-write, where it installs
//     and chains kzero-cni, and cni.Dir, root's only, for the plugin's
//     socket; its metrics port, AgentMetricsPort; a projected token for
//     agentapi.TokenAudience, and the trust domain's CAs from the
//     authority's ClusterTrustBundle, to attest to the authority and to
//     verify it.
//   - the CSI driver (`kzero-agent csi-driver`): privileged, as
//     mount(2) takes CAP_SYS_ADMIN and its mounts must reach kubelet, on
//     the node, through Bidirectional mount propagation, which the API
//     server allows privileged containers only; the socket's directory,
//     read-only, which it binds into pods; kubelet's pods directory, at
//     the same path as on the node, with Bidirectional propagation, where
//     it mounts the pods' volumes at the paths kubelet gives; kubelet's
//     plugins/<driver> directory, for the CSI socket kubelet dials, and
//     plugins_registry, where kubelet finds the driver. It reads nothing a
//     pod sends but kubelet's calls.
//
// The authority's address comes from the environment variables of its
// Service (KZERO_AUTHORITY_SERVICE_HOST, ..._PORT_AGENT), which kubelet
// sets in the pods of the Service's namespace created after it: Render
// puts the Service before the DaemonSet.
func daemonSet(o Options) *appsv1.DaemonSet {
	yes, no := true, false
	root := int64(0)
	dirOrCreate, dir := corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory
	bidirectional := corev1.MountPropagationBidirectional
	tokenSeconds := int64(AgentTokenSeconds)
	ctb := v1alpha1.TrustBundleName(o.TrustDomain)
	// defaults has checked the trust domain and the namespace (a DNS
	// label, so a valid path segment): these cannot panic.
	authorityID := spiffeid.RequireFromSegments(spiffeid.RequireTrustDomainFromString(o.TrustDomain), "ns", o.Namespace, "sa", Name)
	podsDir := filepath.Join(o.KubeletDir, "pods")
	pluginDir := filepath.Join(o.KubeletDir, "plugins", v1alpha1.CSIDriverName)
	registryDir := filepath.Join(o.KubeletDir, "plugins_registry")
	hostPath := func(name, path string, t *corev1.HostPathType) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path, Type: t}}}
	}
	nodeName := []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta(AgentName, o.Namespace, agent),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels(agent)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(agent)},
				Spec: corev1.PodSpec{
					ServiceAccountName:           AgentName,
					AutomountServiceAccountToken: &yes, // it watches pods and namespaces
					HostPID:                      true,
					Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: agent, Image: o.Image, ImagePullPolicy: o.PullPolicy,
						// kzero-agent is `kzero agent` alone, beside /kzero in
						// the image: a fraction of kzero's memory.
						Command: []string{AgentBinary},
						Args: []string{"--node-name", "$(NODE_NAME)", "--trust-domain", o.TrustDomain,
							"--authority-id", authorityID.String(),
							"--bundle-file", AgentAuthorityDir + "/" + AgentBundleFile,
							"--token-file", AgentAuthorityDir + "/" + AgentTokenFile,
							"--socket", v1alpha1.WorkloadAPISocket,
							"--cni-binary", CNIBinary, "--cni-bin-dir", agentCNIBinDir, "--cni-conf-dir", agentCNIConfDir,
							"--metrics-addr", fmt.Sprintf(":%d", AgentMetricsPort)},
						Env:   nodeName,
						Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: AgentMetricsPort, Protocol: corev1.ProtocolTCP}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsGroup: &root, RunAsNonRoot: &no,
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"},
								Add: []corev1.Capability{"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}}},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "workload-api", MountPath: v1alpha1.WorkloadAPIDir},
							{Name: "cni-bin", MountPath: agentCNIBinDir},
							{Name: "cni-conf", MountPath: agentCNIConfDir},
							{Name: "cni-socket", MountPath: cni.Dir},
							{Name: "authority", MountPath: AgentAuthorityDir, ReadOnly: true},
						},
					}, {
						Name: "csi-driver", Image: o.Image, ImagePullPolicy: o.PullPolicy,
						Command: []string{AgentBinary},
						Args:    []string{"csi-driver", "--node-name", "$(NODE_NAME)", "--kubelet-dir", o.KubeletDir, "--workload-api-dir", v1alpha1.WorkloadAPIDir},
						Env:     nodeName,
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
						},
						// Privileged: see above. It writes nothing but its
						// sockets and the pods' mounts.
						SecurityContext: &corev1.SecurityContext{Privileged: &yes, RunAsUser: &root, RunAsGroup: &root,
							ReadOnlyRootFilesystem: &yes},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "workload-api", MountPath: v1alpha1.WorkloadAPIDir, ReadOnly: true},
							{Name: "kubelet-pods", MountPath: podsDir, MountPropagation: &bidirectional},
							{Name: "csi-plugin", MountPath: pluginDir},
							{Name: "plugins-registry", MountPath: registryDir},
						},
					}},
					Volumes: []corev1.Volume{
						hostPath("workload-api", v1alpha1.WorkloadAPIDir, &dirOrCreate),
						hostPath("cni-bin", o.CNIBinDir, &dir),
						hostPath("cni-conf", o.CNIConfDir, &dir),
						hostPath("cni-socket", cni.Dir, &dirOrCreate),
						hostPath("kubelet-pods", podsDir, &dir),
						hostPath("csi-plugin", pluginDir, &dirOrCreate),
						hostPath("plugins-registry", registryDir, &dir),
						{Name: "authority", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
							{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: agentapi.TokenAudience,
								ExpirationSeconds: &tokenSeconds, Path: AgentTokenFile}},
							{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Name: &ctb, Path: AgentBundleFile}},
						}}}},
					},
				},
			},
		},
	}
}

// CSIDriver is the CSI driver the agent serves on every node, which brings
// the Workload API's socket into pods as an inline volume: no controller
// (attachRequired false), inline volumes only, the pod's name, namespace
// and UID in every NodePublishVolume (podInfoOnMount, which the driver
// checks against the target path), no change of ownership (fsGroupPolicy
// None: the socket is open to every user, and the mount is read-only),
// and no republishing.
func CSIDriver() *storagev1.CSIDriver {
	yes, no := true, false
	none := storagev1.NoneFSGroupPolicy
	return &storagev1.CSIDriver{
		TypeMeta:   metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "CSIDriver"},
		ObjectMeta: meta(v1alpha1.CSIDriverName, "", agent),
		Spec: storagev1.CSIDriverSpec{
			AttachRequired: &no, PodInfoOnMount: &yes, RequiresRepublish: &no, FSGroupPolicy: &none,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral},
		},
	}
}

// Agent is what kzero install ships for the node agent in o's namespace:
// its DaemonSet and service account, and the ClusterRole (AgentRules) and
// binding. The e2e tests run the agent from exactly these.
func Agent(o Options) (*appsv1.DaemonSet, *corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, error) {
	if err := o.defaults(); err != nil {
		return nil, nil, nil, nil, err
	}
	return daemonSet(o), agentServiceAccount(o), agentClusterRole(), agentClusterRoleBinding(o), nil
}

// webhook is the mutating webhook. Its namespaceSelector sends it only pods
// of enrolled namespaces, never kube-system nor kzero's own, so its failure
// (policy Fail: no pod of an enrolled namespace starts without its
// identity) blocks nothing else. The authority fills caBundle.
func webhook(o Options) *admissionregistrationv1.MutatingWebhookConfiguration {
	return Webhook(o.Namespace)
}

// Webhook is the MutatingWebhookConfiguration for kzero in namespace ns,
// calling the authority's Service.
func Webhook(ns string) *admissionregistrationv1.MutatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	never := admissionregistrationv1.NeverReinvocationPolicy
	path := WebhookPath
	timeout := int32(5)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: meta(WebhookConfig, "", authority),
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pod-identity.kzero.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: Name, Path: &path}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: enrolledSelector(ns),
			FailurePolicy:     &fail, SideEffects: &none, MatchPolicy: &equivalent, ReinvocationPolicy: &never, TimeoutSeconds: &timeout,
		}},
	}
}

// validatingWebhook is the pod admission webhook.
func validatingWebhook(o Options) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return ValidatingWebhook(o.Namespace)
}

// ValidatingWebhook is the ValidatingWebhookConfiguration for kzero in
// namespace ns, calling the authority's Service: it refuses, in enrolled
// namespaces, pods with a hostPath volume. Like the mutating webhook, it
// fails closed for enrolled namespaces and never sees the others, so an
// authority outage blocks nothing else. The authority fills caBundle.
func ValidatingWebhook(ns string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	path := ValidatingWebhookPath
	timeout := int32(5)
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: meta(WebhookConfig, "", authority),
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "pod-admission.kzero.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: Name, Path: &path}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: enrolledSelector(ns),
			FailurePolicy:     &fail, SideEffects: &none, MatchPolicy: &equivalent, TimeoutSeconds: &timeout,
		}},
	}
}

// enrolledSelector selects the enrolled namespaces but kube-system and
// ns, kzero's own, which never are (v1alpha1.NeverEnrolled).
func enrolledSelector(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{
		MatchLabels: map[string]string{EnrolledLabel: "true"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name",
			Operator: metav1.LabelSelectorOpNotIn, Values: []string{v1alpha1.NamespaceSystem, ns}}},
	}
}

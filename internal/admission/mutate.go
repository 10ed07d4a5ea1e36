package admission

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/api/v1alpha1"
)

// Names and paths of what the webhook adds.
const (
	// SignerName is kzero's PodCertificateRequest signer.
	SignerName = v1alpha1.SignerName
	// VolumeName is the identity volume's name.
	VolumeName = "kzero-identity"
	// MountPath is where every container finds its identity.
	MountPath = "/var/run/secrets/kzero.dev/identity"
	// CredentialBundle is the file with the private key (PKCS#8) then the
	// certificate chain, leaf first; TrustBundle the file with the CAs.
	CredentialBundle = "credentialbundle.pem"
	TrustBundle      = "bundle.pem"

	// WorkloadAPIVolumeName is the name of the volume that brings the
	// node agent's Workload API socket into the pod.
	WorkloadAPIVolumeName = "kzero-workload-api"
	// EndpointSocketEnv is the environment variable in which the SPIFFE
	// Workload Endpoint standard has clients look for the Workload API.
	EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"
	// EndpointSocket is its value: a unix URI with no authority and the
	// socket's absolute path, as the standard requires.
	EndpointSocket = "unix://" + v1alpha1.WorkloadAPISocket

	// EnrolledLabel on a namespace enrols its pods.
	EnrolledLabel = v1alpha1.EnrolledLabel
	// InjectAnnotation "false" on a pod opts it out of everything.
	InjectAnnotation = "kzero.dev/inject"
	// WorkloadAPIAnnotation "false" on a pod leaves the Workload API
	// socket out; the identity volume is still added.
	WorkloadAPIAnnotation = "kzero.dev/workload-api"
)

// Config is what the webhook adds; the zero value means the defaults.
type Config struct {
	// KeyType kubelet generates: ECDSAP256 by default.
	KeyType string
	// MaxExpirationSeconds asked for the certificate; 0 leaves kubelet's
	// default (24 h). The signer issues shorter leaves.
	MaxExpirationSeconds int32
}

// Result is the decision on one pod.
type Result struct {
	// Patch is the JSON patch (RFC 6902) to apply; nil for no change.
	Patch []byte
	// Refused is true when the pod may not be created (Validate).
	Refused bool
	// Reason says why, for the audit trail, and, for a pod refused, for
	// the person who made it: what to change.
	Reason string
}

// Mutate decides what to add to pod, created in namespace ns. It changes
// nothing on pods of namespaces that are not enrolled, of kube-system, and
// pods that opt out with the annotation kzero.dev/inject: "false". To the
// others it adds two things, each unless the pod has it already (a volume
// of its name), so that a pod is never given either twice:
//
//   - the identity volume, VolumeName, mounted read-only at MountPath;
//   - the Workload API socket: the volume WorkloadAPIVolumeName, a CSI
//     inline volume of the node agent's driver v1alpha1.CSIDriverName
//     (which binds the node's v1alpha1.WorkloadAPIDir, read-only),
//     mounted read-only at v1alpha1.WorkloadAPIDir, and EndpointSocketEnv
//     set to EndpointSocket; left out of pods annotated
//     kzero.dev/workload-api: "false".
//
// Mounts go into every container and init container that has nothing at
// their path yet; the variable into every one that does not set it in env
// (a value from envFrom is overridden: env wins over envFrom). Mutate does
// not modify pod.
func Mutate(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (Result, error) {
	switch {
	case ns.Name == metav1.NamespaceSystem:
		return Result{Reason: "kube-system is never enrolled"}, nil
	case ns.Labels[EnrolledLabel] != "true":
		return Result{Reason: "namespace " + ns.Name + " is not enrolled"}, nil
	case pod.Annotations[InjectAnnotation] == "false":
		return Result{Reason: "the pod opts out with " + InjectAnnotation + `: "false"`}, nil
	}
	var (
		add          additions
		added, notes []string
	)
	if hasVolume(pod, VolumeName) {
		notes = append(notes, "the pod already has the identity volume")
	} else {
		add.volumes = append(add.volumes, identityVolume(cfg))
		add.mounts = append(add.mounts, corev1.VolumeMount{Name: VolumeName, MountPath: MountPath, ReadOnly: true})
		added = append(added, "identity volume")
	}
	switch {
	case pod.Annotations[WorkloadAPIAnnotation] == "false":
		notes = append(notes, "the pod opts out of the Workload API socket with "+WorkloadAPIAnnotation+`: "false"`)
	case hasVolume(pod, WorkloadAPIVolumeName):
		notes = append(notes, "the pod already has the Workload API socket")
	default:
		add.volumes = append(add.volumes, workloadAPIVolume())
		add.mounts = append(add.mounts, corev1.VolumeMount{Name: WorkloadAPIVolumeName, MountPath: v1alpha1.WorkloadAPIDir, ReadOnly: true})
		add.env = append(add.env, corev1.EnvVar{Name: EndpointSocketEnv, Value: EndpointSocket})
		added = append(added, "Workload API socket")
	}
	if len(added) == 0 {
		return Result{Reason: strings.Join(notes, "; ")}, nil
	}
	patch, err := json.Marshal(add.ops(pod))
	if err != nil {
		return Result{}, fmt.Errorf("admission: encode patch: %w", err)
	}
	reason := strings.Join(added, " and ") + " added: namespace " + ns.Name + " is enrolled"
	for _, n := range notes {
		reason += "; " + n
	}
	return Result{Patch: patch, Reason: reason}, nil
}

func hasVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

// workloadAPIVolume is the node agent's Workload API directory as a CSI
// inline volume, which Pod Security restricted allows (a hostPath volume
// it refuses). The driver refuses a volume not marked read-only. A pod on
// a node whose agent has not registered the driver yet waits in
// ContainerCreating, and kubelet mounts the volume once it has.
func workloadAPIVolume() corev1.Volume {
	readOnly := true
	return corev1.Volume{Name: WorkloadAPIVolumeName, VolumeSource: corev1.VolumeSource{
		CSI: &corev1.CSIVolumeSource{Driver: v1alpha1.CSIDriverName, ReadOnly: &readOnly},
	}}
}

// identityVolume projects the pod's certificate (kubelet makes the key
// and asks the signer) and the signer's trust bundle.
func identityVolume(cfg Config) corev1.Volume {
	keyType := cfg.KeyType
	if keyType == "" {
		keyType = "ECDSAP256"
	}
	signer := SignerName
	pc := &corev1.PodCertificateProjection{SignerName: SignerName, KeyType: keyType, CredentialBundlePath: CredentialBundle}
	if cfg.MaxExpirationSeconds > 0 {
		pc.MaxExpirationSeconds = &cfg.MaxExpirationSeconds
	}
	return corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: pc},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{SignerName: &signer, LabelSelector: &metav1.LabelSelector{}, Path: TrustBundle}},
		},
	}}}
}

// additions is what goes into the pod: volumes, and the mounts and
// environment variables of every container.
type additions struct {
	volumes []corev1.Volume
	mounts  []corev1.VolumeMount
	env     []corev1.EnvVar
}

// ops is the JSON patch that makes the additions to pod.
func (a additions) ops(pod *corev1.Pod) []op {
	ops := appendOps(nil, "/spec/volumes", len(pod.Spec.Volumes), a.volumes)
	for _, f := range []struct {
		field string
		cs    []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range f.cs {
			base := "/spec/" + f.field + "/" + strconv.Itoa(i)
			ops = appendOps(ops, base+"/volumeMounts", len(c.VolumeMounts), missingMounts(c, a.mounts))
			ops = appendOps(ops, base+"/env", len(c.Env), missingEnv(c, a.env))
		}
	}
	return ops
}

// op is one JSON patch operation.
type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// appendOps appends to ops the operations that add items to the list at
// path, which has have items. An empty list is made whole with one add:
// the API server's JSON of the pod omits empty lists (omitempty), so there
// is no list to append to, and an add of the member replaces one that is
// there empty or null. A list with items is appended to, item by item.
func appendOps[T any](ops []op, path string, have int, items []T) []op {
	switch {
	case len(items) == 0:
		return ops
	case have == 0:
		return append(ops, op{"add", path, items})
	}
	for _, it := range items {
		ops = append(ops, op{"add", path + "/-", it})
	}
	return ops
}

// missingMounts returns the mounts of ms at a path where c mounts nothing.
func missingMounts(c corev1.Container, ms []corev1.VolumeMount) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range ms {
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == m.MountPath }) {
			out = append(out, m)
		}
	}
	return out
}

// missingEnv returns the variables of env that c does not set in env.
func missingEnv(c corev1.Container, env []corev1.EnvVar) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range env {
		if !slices.ContainsFunc(c.Env, func(ce corev1.EnvVar) bool { return ce.Name == e.Name }) {
			out = append(out, e)
		}
	}
	return out
}

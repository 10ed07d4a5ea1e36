package admission

import (
	"encoding/json"
	"fmt"
	"strconv"

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

	// EnrolledLabel on a namespace enrols its pods.
	EnrolledLabel = v1alpha1.EnrolledLabel
	// InjectAnnotation "false" on a pod opts it out.
	InjectAnnotation = "kzero.dev/inject"
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
	// Reason says why, for the audit trail.
	Reason string
}

// Mutate decides what to add to pod, created in namespace ns. It changes
// nothing on pods of namespaces that are not enrolled, of kube-system, pods
// that opt out with the annotation kzero.dev/inject: "false", and pods
// that already have the volume.
func Mutate(pod *corev1.Pod, ns *corev1.Namespace, cfg Config) (Result, error) {
	switch {
	case ns.Name == metav1.NamespaceSystem:
		return Result{Reason: "kube-system is never enrolled"}, nil
	case ns.Labels[EnrolledLabel] != "true":
		return Result{Reason: "namespace " + ns.Name + " is not enrolled"}, nil
	case pod.Annotations[InjectAnnotation] == "false":
		return Result{Reason: "the pod opts out with " + InjectAnnotation + `: "false"`}, nil
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == VolumeName {
			return Result{Reason: "the pod already has the identity volume"}, nil
		}
	}
	keyType := cfg.KeyType
	if keyType == "" {
		keyType = "ECDSAP256"
	}
	signer := SignerName
	pc := &corev1.PodCertificateProjection{SignerName: SignerName, KeyType: keyType, CredentialBundlePath: CredentialBundle}
	if cfg.MaxExpirationSeconds > 0 {
		pc.MaxExpirationSeconds = &cfg.MaxExpirationSeconds
	}
	vol := corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: pc},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{SignerName: &signer, LabelSelector: &metav1.LabelSelector{}, Path: TrustBundle}},
		},
	}}}
	var ops []op
	if pod.Spec.Volumes == nil {
		ops = append(ops, op{"add", "/spec/volumes", []corev1.Volume{vol}})
	} else {
		ops = append(ops, op{"add", "/spec/volumes/-", vol})
	}
	mount := corev1.VolumeMount{Name: VolumeName, MountPath: MountPath, ReadOnly: true}
	ops = append(ops, mounts("initContainers", pod.Spec.InitContainers, mount)...)
	ops = append(ops, mounts("containers", pod.Spec.Containers, mount)...)
	patch, err := json.Marshal(ops)
	if err != nil {
		return Result{}, fmt.Errorf("admission: encode patch: %w", err)
	}
	return Result{Patch: patch, Reason: "identity volume added: namespace " + ns.Name + " is enrolled"}, nil
}

// op is one JSON patch operation.
type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// mounts adds the mount to every container that has nothing at its path.
func mounts(field string, cs []corev1.Container, m corev1.VolumeMount) []op {
	var ops []op
	for i, c := range cs {
		taken := false
		for _, vm := range c.VolumeMounts {
			taken = taken || vm.MountPath == m.MountPath
		}
		if taken {
			continue
		}
		base := "/spec/" + field + "/" + strconv.Itoa(i) + "/volumeMounts"
		if c.VolumeMounts == nil {
			ops = append(ops, op{"add", base, []corev1.VolumeMount{m}})
		} else {
			ops = append(ops, op{"add", base + "/-", m})
		}
	}
	return ops
}

package admission

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/api/v1alpha1"
)

// Validate decides whether pod may be created in namespace ns. In an
// enrolled namespace it refuses a pod with a hostPath volume: through the
// node's filesystem a pod could read the private keys kubelet keeps for
// other pods, or reach the node agent's socket directory read-write, and
// so take another workload's identity. Pods of namespaces that are not
// enrolled, and of kube-system, are left to Pod Security Admission. The
// opt-out annotation does not exempt a pod: it only leaves out its
// identity. Validate is a pure function and does not modify pod.
func Validate(pod *corev1.Pod, ns *corev1.Namespace) Result {
	switch {
	case ns.Name == v1alpha1.NamespaceSystem:
		return Result{Reason: "kube-system is never enrolled"}
	case ns.Labels[EnrolledLabel] != "true":
		return Result{Reason: "namespace " + ns.Name + " is not enrolled"}
	}
	var mounts []string
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			mounts = append(mounts, fmt.Sprintf("%s as volume %q", quoted(v.HostPath.Path), v.Name))
		}
	}
	if len(mounts) == 0 {
		return Result{Reason: "no hostPath volume in a pod of enrolled namespace " + ns.Name}
	}
	return Result{Refused: true, Reason: fmt.Sprintf(
		"pod %s mounts the node's filesystem (hostPath %s): enrolled namespaces refuse hostPath volumes, through which a pod could read other pods' private keys; "+
			"use an emptyDir, a persistentVolumeClaim, a configMap or a secret volume instead, or run the pod in a namespace that is not enrolled",
		podName(pod, ns.Name), strings.Join(mounts, ", "))}
}

// podName is namespace/name, or namespace/generateName* for a pod whose
// name the API server has not made yet.
func podName(pod *corev1.Pod, ns string) string {
	if pod.Name == "" && pod.GenerateName != "" {
		return ns + "/" + pod.GenerateName + "*"
	}
	return ns + "/" + pod.Name
}

// maxQuoted bounds what of a pod's own text a refusal quotes.
const maxQuoted = 256

// quoted is s, cut to maxQuoted bytes, for a message that quotes it.
func quoted(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return strings.ToValidUTF8(s[:maxQuoted], "") + "…"
}

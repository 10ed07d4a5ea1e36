package admission_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"kzero.dev/kzero/internal/admission"
)

func hostPath(name, path string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
}

func TestValidate(t *testing.T) {
	const advice = "enrolled namespaces refuse hostPath volumes, through which a pod could read other pods' private keys; " +
		"use an emptyDir, a persistentVolumeClaim, a configMap or a secret volume instead, or run the pod in a namespace that is not enrolled"
	for _, tc := range []struct {
		name    string
		ns      *corev1.Namespace
		mutate  func(*corev1.Pod)
		refused bool
		reason  string
	}{
		{name: "no hostPath", ns: ns("shop", true),
			reason: "no hostPath volume in a pod of enrolled namespace shop"},
		{name: "the agent's socket dir", ns: ns("shop", true),
			mutate:  func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, hostPath("sock", "/run/kzero/agent")) },
			refused: true, reason: `pod shop/web mounts the node's filesystem (hostPath /run/kzero/agent as volume "sock"): ` + advice},
		{name: "kubelet's pods, among other volumes", ns: ns("shop", true),
			mutate: func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					hostPath("keys", "/var/lib/kubelet/pods"), hostPath("root", "/")}
			},
			refused: true, reason: `pod shop/web mounts the node's filesystem (hostPath /var/lib/kubelet/pods as volume "keys", / as volume "root"): ` + advice},
		{name: "opting out of identity does not allow it", ns: ns("shop", true),
			mutate: func(p *corev1.Pod) {
				p.Annotations = map[string]string{admission.InjectAnnotation: "false"}
				p.Spec.Volumes = []corev1.Volume{hostPath("root", "/")}
			},
			refused: true, reason: `pod shop/web mounts the node's filesystem (hostPath / as volume "root"): ` + advice},
		{name: "a pod whose name is to come", ns: ns("shop", true),
			mutate: func(p *corev1.Pod) {
				p.Name, p.GenerateName = "", "web-7d4b9c-"
				p.Spec.Volumes = []corev1.Volume{hostPath("root", "/")}
			},
			refused: true, reason: `pod shop/web-7d4b9c-* mounts the node's filesystem (hostPath / as volume "root"): ` + advice},
		{name: "a long path is quoted cut", ns: ns("shop", true),
			mutate:  func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{hostPath("long", "/"+strings.Repeat("a", 300))} },
			refused: true, reason: `pod shop/web mounts the node's filesystem (hostPath /` + strings.Repeat("a", 255) + `… as volume "long"): ` + advice},
		{name: "namespace not enrolled", ns: ns("plain", false),
			mutate: func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{hostPath("root", "/")} },
			reason: "namespace plain is not enrolled"},
		{name: "kube-system, even labeled", ns: ns("kube-system", true),
			mutate: func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{hostPath("root", "/")} },
			reason: "kube-system is never enrolled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod(tc.mutate)
			res := admission.Validate(p, tc.ns)
			if res.Refused != tc.refused || res.Reason != tc.reason || res.Patch != nil {
				t.Errorf("Validate = %+v\nwant refused %t, %q", res, tc.refused, tc.reason)
			}
		})
	}
}

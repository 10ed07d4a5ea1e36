//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A pod built from the test image serves HTTP, and a second pod reaches it
// through a ClusterIP Service (kube-proxy's rules, the bridge network).
func TestPodReachesPodThroughClusterIP(t *testing.T) {
	ns := namespace(t)

	server := testPod("server", "serve", ":8080")
	server.Spec.RestartPolicy = corev1.RestartPolicyAlways
	server.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	server.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
		PeriodSeconds: 1,
	}
	createPod(t, ns, server)

	svc, err := kube.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": "server"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	ip := svc.Spec.ClusterIP
	if !kube.Layout.InRanges(ip) {
		t.Fatalf("Service got ClusterIP %s, outside the harness's range %s; not sending to it", ip, kube.Layout.ServiceCIDR)
	}
	if err := kube.CheckContained(t.Context()); err != nil {
		t.Fatal(err)
	}

	p := waitPod(t, ns, "server", 2*time.Minute, ready)
	if !kube.Layout.InRanges(p.Status.PodIP) {
		t.Fatalf("server pod got IP %s, outside the cluster's range %s", p.Status.PodIP, kube.Layout.GuardCIDR)
	}

	createPod(t, ns, testPod("client", "fetch", "http://"+ip+"/hello"))
	waitPod(t, ns, "client", 2*time.Minute, succeeded)
	if got, want := podLog(t, ns, "client"), "hello from server"; !strings.Contains(got, want) {
		t.Errorf("client pod printed %q, want %q", got, want)
	}
}

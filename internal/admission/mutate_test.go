package admission_test

import (
	"bytes"
	"encoding/json"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kzero.dev/kzero/internal/admission"
)

func ns(name string, enrolled bool) *corev1.Namespace {
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if enrolled {
		n.Labels["kzero.dev/enrolled"] = "true"
	}
	return n
}

func pod(mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
		Containers: []corev1.Container{
			{Name: "app", Image: "app", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			{Name: "sidecar-free", Image: "log"},
		},
		Volumes: []corev1.Volume{{Name: "data"}},
	}}
	if mutate != nil {
		mutate(p)
	}
	return p
}

// apply applies a JSON patch for real and returns the patched pod.
func apply(t *testing.T, p *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	doc, _ := json.Marshal(p)
	jp, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("the patch does not decode: %v\n%s", err, patch)
	}
	out, err := jp.Apply(doc)
	if err != nil {
		t.Fatalf("the patch does not apply: %v\n%s", err, patch)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// What Mutate adds, as a pod's spec spells it.
var (
	signer      = "kzero.dev/identity"
	readOnly    = true
	identityVol = corev1.Volume{Name: "kzero-identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{SignerName: "kzero.dev/identity", KeyType: "ECDSAP256", CredentialBundlePath: "credentialbundle.pem"}},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{SignerName: &signer, LabelSelector: &metav1.LabelSelector{}, Path: "bundle.pem"}},
		},
	}}}
	identityMount = corev1.VolumeMount{Name: "kzero-identity", MountPath: "/var/run/secrets/kzero.dev/identity", ReadOnly: true}
	socketVol     = corev1.Volume{Name: "kzero-workload-api", VolumeSource: corev1.VolumeSource{
		CSI: &corev1.CSIVolumeSource{Driver: "csi.kzero.dev", ReadOnly: &readOnly},
	}}
	socketMount = corev1.VolumeMount{Name: "kzero-workload-api", MountPath: "/run/kzero/agent", ReadOnly: true}
	socketEnv   = corev1.EnvVar{Name: "SPIFFE_ENDPOINT_SOCKET", Value: "unix:///run/kzero/agent/agent.sock"}
)

// injected is p with the identity volume and, if socket, the Workload API
// socket added the way Mutate adds them to every container.
func injected(p *corev1.Pod, identity, socket bool) *corev1.Pod {
	p = p.DeepCopy()
	if identity {
		p.Spec.Volumes = append(p.Spec.Volumes, *identityVol.DeepCopy())
	}
	if socket {
		p.Spec.Volumes = append(p.Spec.Volumes, *socketVol.DeepCopy())
	}
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if identity {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, identityMount)
			}
			if socket {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, socketMount)
				cs[i].Env = append(cs[i].Env, socketEnv)
			}
		}
	}
	return p
}

func withAnnotation(key, value string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{key: value} }
}

func withVolumes(vs ...corev1.Volume) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for _, v := range vs {
			p.Spec.Volumes = append(p.Spec.Volumes, *v.DeepCopy())
		}
	}
}

func TestMutate(t *testing.T) {
	const both = "identity volume and Workload API socket added: namespace shop is enrolled"
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		ns     *corev1.Namespace
		cfg    admission.Config
		want   *corev1.Pod // nil: no patch
		reason string
	}{
		{name: "enrolled", pod: pod(nil), ns: ns("shop", true), want: injected(pod(nil), true, true), reason: both},
		{name: "no volumes, mounts or env yet", pod: pod(func(p *corev1.Pod) {
			p.Spec.Volumes, p.Spec.InitContainers = nil, nil
			p.Spec.Containers[0].VolumeMounts = nil
		}), ns: ns("shop", true), want: injected(pod(func(p *corev1.Pod) {
			p.Spec.Volumes, p.Spec.InitContainers = nil, nil
			p.Spec.Containers[0].VolumeMounts = nil
		}), true, true), reason: both},
		// The API server's JSON of the pod omits empty lists: there is
		// nothing to append to, and the patch must make the lists.
		{name: "empty lists, not nil", pod: pod(func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{}
			for i := range p.Spec.Containers {
				p.Spec.Containers[i].VolumeMounts, p.Spec.Containers[i].Env = []corev1.VolumeMount{}, []corev1.EnvVar{}
			}
		}), ns: ns("shop", true), want: injected(pod(func(p *corev1.Pod) { p.Spec.Volumes, p.Spec.Containers[0].VolumeMounts = nil, nil }), true, true),
			reason: both},
		{name: "a container that sets SPIFFE_ENDPOINT_SOCKET keeps it", pod: pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "SPIFFE_ENDPOINT_SOCKET", Value: "unix:///elsewhere.sock"}}
		}), ns: ns("shop", true), want: func() *corev1.Pod {
			p := injected(pod(nil), true, true)
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "SPIFFE_ENDPOINT_SOCKET", Value: "unix:///elsewhere.sock"}}
			return p
		}(), reason: both},
		{name: "a container with a mount at a path keeps it", pod: pod(func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "own"})
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts,
				corev1.VolumeMount{Name: "own", MountPath: "/run/kzero/agent"}, corev1.VolumeMount{Name: "own", MountPath: "/var/run/secrets/kzero.dev/identity"})
		}), ns: ns("shop", true), want: func() *corev1.Pod {
			p := injected(pod(nil), true, true)
			p.Spec.Volumes = []corev1.Volume{{Name: "data"}, {Name: "own"}, *identityVol.DeepCopy(), *socketVol.DeepCopy()}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"},
				{Name: "own", MountPath: "/run/kzero/agent"}, {Name: "own", MountPath: "/var/run/secrets/kzero.dev/identity"}}
			return p
		}(), reason: both},
		{name: "socket opted out", pod: pod(withAnnotation("kzero.dev/workload-api", "false")), ns: ns("shop", true),
			want:   injected(pod(withAnnotation("kzero.dev/workload-api", "false")), true, false),
			reason: `identity volume added: namespace shop is enrolled; the pod opts out of the Workload API socket with kzero.dev/workload-api: "false"`},
		{name: "socket annotation other than false", pod: pod(withAnnotation("kzero.dev/workload-api", "no")), ns: ns("shop", true),
			want: injected(pod(withAnnotation("kzero.dev/workload-api", "no")), true, true), reason: both},
		{name: "key type and lifetime configured", pod: pod(nil), ns: ns("shop", true), cfg: admission.Config{KeyType: "ED25519", MaxExpirationSeconds: 7200},
			want: func() *corev1.Pod {
				p := injected(pod(nil), true, true)
				pc := p.Spec.Volumes[1].Projected.Sources[0].PodCertificate
				pc.KeyType, pc.MaxExpirationSeconds = "ED25519", new(int32(7200))
				return p
			}(), reason: both},
		{name: "not enrolled", pod: pod(nil), ns: ns("shop", false), reason: "namespace shop is not enrolled"},
		{name: "kube-system even when labelled", pod: pod(nil), ns: ns("kube-system", true), reason: "kube-system is never enrolled"},
		{name: "opted out", pod: pod(withAnnotation("kzero.dev/inject", "false")), ns: ns("shop", true),
			reason: `the pod opts out with kzero.dev/inject: "false"`},
		{name: "already has the identity volume", pod: pod(withVolumes(identityVol)), ns: ns("shop", true),
			want:   injected(pod(withVolumes(identityVol)), false, true),
			reason: "Workload API socket added: namespace shop is enrolled; the pod already has the identity volume"},
		{name: "already has the socket", pod: pod(withVolumes(socketVol)), ns: ns("shop", true),
			want:   injected(pod(withVolumes(socketVol)), true, false),
			reason: "identity volume added: namespace shop is enrolled; the pod already has the Workload API socket"},
		{name: "already has both", pod: pod(withVolumes(identityVol, corev1.Volume{Name: "kzero-workload-api"})), ns: ns("shop", true),
			reason: "the pod already has the identity volume; the pod already has the Workload API socket"},
		{name: "already has the identity volume, socket opted out", pod: pod(func(p *corev1.Pod) {
			withVolumes(identityVol)(p)
			withAnnotation("kzero.dev/workload-api", "false")(p)
		}), ns: ns("shop", true),
			reason: `the pod already has the identity volume; the pod opts out of the Workload API socket with kzero.dev/workload-api: "false"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := json.Marshal(tc.pod)
			res, err := admission.Mutate(tc.pod, tc.ns, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := json.Marshal(tc.pod); !bytes.Equal(after, before) {
				t.Errorf("Mutate modified its pod:\n%s\nwas\n%s", after, before)
			}
			if res.Reason != tc.reason || (res.Patch != nil) != (tc.want != nil) {
				t.Fatalf("Mutate = %q, patch %v; want %q, patch %v", res.Reason, res.Patch != nil, tc.reason, tc.want != nil)
			}
			if tc.want == nil {
				return
			}
			got := apply(t, tc.pod, res.Patch)
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tc.want)
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("patched pod:\n%s\nwant\n%s\npatch: %s", gotJSON, wantJSON, res.Patch)
			}
			again, err := admission.Mutate(got, tc.ns, tc.cfg)
			if err != nil || again.Patch != nil {
				t.Errorf("Mutate of the patched pod = %q, patch %s, %v; want no patch", again.Reason, again.Patch, err)
			}
		})
	}
}

// TestMutatePatch pins the patch itself: lists that exist are appended to
// (so that a concurrent mutation of other items is kept), lists that do
// not are made whole.
func TestMutatePatch(t *testing.T) {
	res, err := admission.Mutate(pod(func(p *corev1.Pod) { p.Spec.Containers = p.Spec.Containers[:1] }), ns("shop", true), admission.Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := `[` +
		`{"op":"add","path":"/spec/volumes/-","value":{"name":"kzero-identity","projected":{"sources":[` +
		`{"podCertificate":{"signerName":"kzero.dev/identity","keyType":"ECDSAP256","credentialBundlePath":"credentialbundle.pem"}},` +
		`{"clusterTrustBundle":{"signerName":"kzero.dev/identity","labelSelector":{},"path":"bundle.pem"}}]}}},` +
		`{"op":"add","path":"/spec/volumes/-","value":{"name":"kzero-workload-api","csi":{"driver":"csi.kzero.dev","readOnly":true}}},` +
		`{"op":"add","path":"/spec/initContainers/0/volumeMounts","value":[` +
		`{"name":"kzero-identity","readOnly":true,"mountPath":"/var/run/secrets/kzero.dev/identity"},` +
		`{"name":"kzero-workload-api","readOnly":true,"mountPath":"/run/kzero/agent"}]},` +
		`{"op":"add","path":"/spec/initContainers/0/env","value":[{"name":"SPIFFE_ENDPOINT_SOCKET","value":"unix:///run/kzero/agent/agent.sock"}]},` +
		`{"op":"add","path":"/spec/containers/0/volumeMounts/-","value":{"name":"kzero-identity","readOnly":true,"mountPath":"/var/run/secrets/kzero.dev/identity"}},` +
		`{"op":"add","path":"/spec/containers/0/volumeMounts/-","value":{"name":"kzero-workload-api","readOnly":true,"mountPath":"/run/kzero/agent"}},` +
		`{"op":"add","path":"/spec/containers/0/env","value":[{"name":"SPIFFE_ENDPOINT_SOCKET","value":"unix:///run/kzero/agent/agent.sock"}]}` +
		`]`
	if string(res.Patch) != want {
		t.Errorf("patch\n%s\nwant\n%s", res.Patch, want)
	}
}

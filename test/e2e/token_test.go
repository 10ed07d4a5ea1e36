//go:build e2e

package e2e

import (
	"slices"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A projected service account token with audience kzero is mounted into a
// pod, and kube-apiserver's TokenReview accepts it for that audience only.
func TestProjectedTokenAudience(t *testing.T) {
	ns := namespace(t)
	expiry := int64(600)
	pod := testPod("token", "cat", "/var/run/secrets/kzero/token")
	pod.Spec.Volumes = []corev1.Volume{{
		Name: "kzero-token",
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: "kzero", ExpirationSeconds: &expiry, Path: "token",
			}}},
		}},
	}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kzero-token", MountPath: "/var/run/secrets/kzero", ReadOnly: true}}
	createPod(t, ns, pod)
	waitPod(t, ns, "token", 2*time.Minute, succeeded)
	token := podLog(t, ns, "token")
	if len(token) < 100 {
		t.Fatalf("pod printed %q, not a token", token)
	}

	review := func(audiences ...string) authnv1.TokenReviewStatus {
		t.Helper()
		r, err := kube.Client.AuthenticationV1().TokenReviews().Create(t.Context(), &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: token, Audiences: audiences},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenReview for %v: %v", audiences, err)
		}
		return r.Status
	}

	st := review("kzero")
	if !st.Authenticated {
		t.Fatalf("TokenReview with audience kzero: not authenticated: %s", st.Error)
	}
	if want := "system:serviceaccount:" + ns + ":default"; st.User.Username != want {
		t.Errorf("TokenReview user = %q, want %q", st.User.Username, want)
	}
	if !slices.Contains(st.Audiences, "kzero") {
		t.Errorf("TokenReview audiences = %v, want kzero among them", st.Audiences)
	}

	if st := review("not-kzero"); st.Authenticated {
		t.Errorf("TokenReview with audience not-kzero accepted the kzero token as %q", st.User.Username)
	} else if st.Error == "" {
		t.Errorf("TokenReview with audience not-kzero rejected the token without saying why")
	}
}

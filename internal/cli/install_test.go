package cli_test

import (
	"strings"
	"testing"
)

// TestInstallKubeletDir: --kubelet-dir reaches the agent's DaemonSet, its
// mounts and its flag; a relative one is refused, saying what to give.
func TestInstallKubeletDir(t *testing.T) {
	out, err := run("install", "--image", "kzero.local/kzero:test", "--kubelet-dir", "/data/kubelet")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"path: /data/kubelet/pods\n", "path: /data/kubelet/plugins_registry\n",
		"path: /data/kubelet/plugins/csi.kzero.dev\n", "- --kubelet-dir\n        - /data/kubelet\n", "kind: CSIDriver\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("kzero install --kubelet-dir /data/kubelet printed no %q", want)
		}
	}
	if strings.Contains(out, "/var/lib/kubelet") {
		t.Error("kzero install --kubelet-dir /data/kubelet still names /var/lib/kubelet")
	}
	_, err = run("install", "--image", "kzero.local/kzero:test", "--kubelet-dir", "kubelet")
	if want := `install: kubeletDir: "kubelet": want kubelet's root directory on the nodes (its --root-dir), an absolute, clean path such as /var/lib/kubelet`; err == nil || err.Error() != want {
		t.Errorf("--kubelet-dir kubelet: %v, want %s", err, want)
	}
}

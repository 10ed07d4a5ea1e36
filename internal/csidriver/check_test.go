package csidriver

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

const (
	testDriver  = "csi.kzero.dev"
	testPodsDir = "/var/lib/kubelet/pods"
	testUID     = "3a60b6d9-852f-40bc-bfa6-9e8891d96dbe"
	testTarget  = testPodsDir + "/" + testUID + "/volumes/kubernetes.io~csi/kzero-workload-api/mount"
)

// kubeletRequest is the request kubelet 1.37 sends for the inline volume
// csi: {driver: csi.kzero.dev, readOnly: true} of pod shop/web-0, with the
// CSIDriver's podInfoOnMount: true (pkg/volume/csi's csiMountMgr.SetUpAt
// and csiDriverClient.NodePublishVolume).
func kubeletRequest() *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:   "csi-0f3ad0c2b0b8c4a1d2f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80",
		TargetPath: testTarget,
		Readonly:   true,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			"csi.storage.k8s.io/ephemeral":           "true",
			"csi.storage.k8s.io/pod.uid":             testUID,
			"csi.storage.k8s.io/pod.name":            "web-0",
			"csi.storage.k8s.io/pod.namespace":       "shop",
			"csi.storage.k8s.io/serviceAccount.name": "web",
		},
	}
}

func TestCheckPublish(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(r *csi.NodePublishVolumeRequest)
		want   string
	}{
		{"kubelet's request for an inline volume", func(*csi.NodePublishVolumeRequest) {}, ""},
		{"a static pod's UID", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = testPodsDir + "/0123456789abcdef0123456789abcdef/volumes/kubernetes.io~csi/kzero-workload-api/mount"
			r.VolumeContext["csi.storage.k8s.io/pod.uid"] = "0123456789abcdef0123456789abcdef"
		}, ""},
		{"readOnly false", func(r *csi.NodePublishVolumeRequest) { r.Readonly = false },
			"the volume of the CSI driver csi.kzero.dev must be read-only: set readOnly: true in the pod's csi volume"},
		{"no volume ID", func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }, "volume ID: empty"},
		{"a volume ID over 128 bytes", func(r *csi.NodePublishVolumeRequest) { r.VolumeId = strings.Repeat("a", 129) },
			"volume ID: 129 bytes, over CSI's limit of 128"},
		{"no target path", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "" }, "target path: empty"},
		{"a target path over PATH_MAX", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "/" + strings.Repeat("a", 4095) },
			"target path: 4096 bytes, over the kernel's limit of 4095"},
		{"a relative target path", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "pods/x/mount" },
			`target path "pods/x/mount": not absolute`},
		{"a target path with ..", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = testPodsDir + "/" + testUID + "/volumes/kubernetes.io~csi/../../../../../../etc/mount"
		}, `target path "/var/lib/kubelet/pods/3a60b6d9-852f-40bc-bfa6-9e8891d96dbe/volumes/kubernetes.io~csi/../../../../../../etc/mount": not clean (no "..", ".", "//" or trailing "/")`},
		{"a target path with a trailing slash", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = testTarget + "/" },
			`target path "` + testTarget + `/": not clean (no "..", ".", "//" or trailing "/")`},
		{"a target path with a NUL", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = testTarget + "\x00x" },
			`target path "` + testTarget + `\x00x": holds a NUL byte`},
		{"a target path outside the pods directory", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "/var/lib/kubelet/plugins/x/mount" },
			`target path "/var/lib/kubelet/plugins/x/mount": not under kubelet's pods directory /var/lib/kubelet/pods: want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount (is the agent's --kubelet-dir kubelet's --root-dir?)`},
		{"the pods directory's sibling", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = "/var/lib/kubelet/pods-x/" + testUID + "/volumes/kubernetes.io~csi/v/mount"
		},
			`target path "/var/lib/kubelet/pods-x/3a60b6d9-852f-40bc-bfa6-9e8891d96dbe/volumes/kubernetes.io~csi/v/mount": not under kubelet's pods directory /var/lib/kubelet/pods: want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount (is the agent's --kubelet-dir kubelet's --root-dir?)`},
		{"another kind of volume", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = testPodsDir + "/" + testUID + "/volumes/kubernetes.io~empty-dir/data/mount"
		}, `target path "/var/lib/kubelet/pods/3a60b6d9-852f-40bc-bfa6-9e8891d96dbe/volumes/kubernetes.io~empty-dir/data/mount": want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount`},
		{"the pod's directory", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = testPodsDir + "/" + testUID },
			`target path "/var/lib/kubelet/pods/3a60b6d9-852f-40bc-bfa6-9e8891d96dbe": want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount`},
		{"deeper than the mount", func(r *csi.NodePublishVolumeRequest) { r.TargetPath = testTarget + "/etc" },
			`target path "` + testTarget + `/etc": want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount`},
		{"not a pod UID", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = testPodsDir + "/Web/volumes/kubernetes.io~csi/kzero-workload-api/mount"
		}, `target path "/var/lib/kubelet/pods/Web/volumes/kubernetes.io~csi/kzero-workload-api/mount": "Web" is not a pod UID`},
		{"not a volume name", func(r *csi.NodePublishVolumeRequest) {
			r.TargetPath = testPodsDir + "/" + testUID + "/volumes/kubernetes.io~csi/Vol_1/mount"
		}, `target path "/var/lib/kubelet/pods/3a60b6d9-852f-40bc-bfa6-9e8891d96dbe/volumes/kubernetes.io~csi/Vol_1/mount": "Vol_1" is not a volume name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"a persistent volume", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext["csi.storage.k8s.io/ephemeral"] = "false" },
			"the CSI driver csi.kzero.dev serves only inline volumes: declare it in the pod's volumes, as csi: {driver: csi.kzero.dev, readOnly: true}, not in a PersistentVolume"},
		{"no pod information", func(r *csi.NodePublishVolumeRequest) { r.VolumeContext = nil },
			"the CSI driver csi.kzero.dev serves only inline volumes: declare it in the pod's volumes, as csi: {driver: csi.kzero.dev, readOnly: true}, not in a PersistentVolume"},
		{"no volume capability", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }, "volume capability: missing"},
		{"a block device", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
		}, "the CSI driver csi.kzero.dev mounts a directory, not a block device: remove fsType: block from the pod's csi volume"},
		{"no access type", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.AccessType = nil }, "volume capability: not a mount"},
		{"a file system type", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.GetMount().FsType = "ext4" },
			`the CSI driver csi.kzero.dev mounts a directory, with no file system type: remove fsType "ext4" from the pod's csi volume`},
		{"mount options", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.GetMount().MountFlags = []string{"rw"} },
			"the CSI driver csi.kzero.dev takes no mount options (it mounts read-only, nosuid, nodev, noexec)"},
		{"a volume mount group", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.GetMount().VolumeMountGroup = "1000" },
			"the CSI driver csi.kzero.dev changes no group ownership: the socket is open to every user"},
		{"no access mode", func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.AccessMode = nil }, "volume capability: no access mode"},
		{"an unknown access mode", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessMode.Mode = csi.VolumeCapability_AccessMode_UNKNOWN
		},
			"volume capability: no access mode"},
		{"secrets", func(r *csi.NodePublishVolumeRequest) { r.Secrets = map[string]string{"token": "x"} },
			"the CSI driver csi.kzero.dev takes no secrets: remove nodePublishSecretRef from the pod's csi volume"},
		{"a publish context", func(r *csi.NodePublishVolumeRequest) { r.PublishContext = map[string]string{"k": "v"} },
			"the CSI driver csi.kzero.dev has no controller, so no publish context: this request is not kubelet's for an inline volume"},
		{"a staging path", func(r *csi.NodePublishVolumeRequest) { r.StagingTargetPath = "/var/lib/kubelet/plugins/x" },
			"the CSI driver csi.kzero.dev stages no volume, so no staging target path: this request is not kubelet's for an inline volume"},
		{"the pod's volumeAttributes", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext["sourceDir"] = "/etc"
			r.VolumeContext["mode"] = "rw"
		}, `volume attribute "mode": the volume takes no volumeAttributes: remove them from the pod's csi volume`},
		{"a volume context over 4 KiB", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext["csi.storage.k8s.io/x"] = strings.Repeat("a", 4000)
		}, "volume context: 4223 bytes, over CSI's limit of 4096"},
		{"no pod UID", func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, "csi.storage.k8s.io/pod.uid") },
			"the volume context has no csi.storage.k8s.io/pod.uid: the CSIDriver csi.kzero.dev must have podInfoOnMount: true (kzero install sets it)"},
		{"another pod's target path", func(r *csi.NodePublishVolumeRequest) {
			r.VolumeContext["csi.storage.k8s.io/pod.uid"] = "0123456789abcdef0123456789abcdef"
		}, "target path is of pod 3a60b6d9-852f-40bc-bfa6-9e8891d96dbe, and the volume context of pod 0123456789abcdef0123456789abcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := kubeletRequest()
			tc.change(r)
			err := checkPublish(r, testDriver, testPodsDir)
			if got := errText(err); got != tc.want {
				t.Errorf("checkPublish:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestCheckUnpublish(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *csi.NodeUnpublishVolumeRequest
		want string
	}{
		{"kubelet's request", &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-1", TargetPath: testTarget}, ""},
		{"no volume ID", &csi.NodeUnpublishVolumeRequest{TargetPath: testTarget}, "volume ID: empty"},
		{"no target path", &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-1"}, "target path: empty"},
		{"the node's /etc", &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-1", TargetPath: "/etc"},
			`target path "/etc": not under kubelet's pods directory /var/lib/kubelet/pods: want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount (is the agent's --kubelet-dir kubelet's --root-dir?)`},
		{"the pods directory", &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-1", TargetPath: testPodsDir},
			`target path "/var/lib/kubelet/pods": not under kubelet's pods directory /var/lib/kubelet/pods: want /var/lib/kubelet/pods/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount (is the agent's --kubelet-dir kubelet's --root-dir?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errText(checkUnpublish(tc.req, testPodsDir)); got != tc.want {
				t.Errorf("checkUnpublish:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzCheckTarget: whatever kubelet (or anyone who reaches the socket)
// sends, an accepted target path is exactly a CSI volume's mount directory
// of a pod under the pods directory, and names that pod.
func FuzzCheckTarget(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzCheckTarget.
	f.Fuzz(func(t *testing.T, path string) {
		uid, err := checkTarget(path, testPodsDir)
		if err != nil {
			return
		}
		rel, rerr := filepath.Rel(testPodsDir, path)
		if rerr != nil || strings.HasPrefix(rel, "..") || filepath.Clean(path) != path {
			t.Fatalf("accepted %q, outside %s or not clean", path, testPodsDir)
		}
		parts := strings.Split(rel, "/")
		if len(parts) != 5 || parts[0] != uid || parts[1] != "volumes" || parts[2] != "kubernetes.io~csi" || parts[4] != "mount" ||
			parts[3] == "" || parts[3] == "." || parts[3] == ".." || uid == "" || strings.ContainsAny(uid, "./") {
			t.Fatalf("accepted %q, not a CSI volume's mount directory of pod %q", path, uid)
		}
	})
}

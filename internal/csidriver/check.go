package csidriver

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The bounds of what kubelet may pass: CSI's own size limits (a string
// field 128 bytes, a map 4 KiB), and a path no longer than the kernel
// takes (PATH_MAX, 4096 bytes with the NUL).
const (
	maxVolumeID       = 128
	maxVolumeContext  = 4 << 10
	maxPath           = 4095
	maxRequestMessage = 64 << 10 // a whole request, far above the sum of the above
)

// The volume context keys kubelet sets for a CSIDriver with
// podInfoOnMount: true. Keys of this prefix are kubelet's; a pod's
// volumeAttributes of the same names are overwritten by kubelet's values.
const (
	kubeletKeyPrefix = "csi.storage.k8s.io/"
	ephemeralKey     = kubeletKeyPrefix + "ephemeral"
	podUIDKey        = kubeletKeyPrefix + "pod.uid"
)

// csiVolumesDir is the directory, under a pod's directory of kubelet, of
// the pod's CSI volumes: <pods>/<pod UID>/volumes/kubernetes.io~csi/<volume
// name>/mount.
const csiVolumesDir = "volumes/kubernetes.io~csi"

// checkPublish checks everything NodePublishVolume reads of req, before
// anything is mounted, for a driver named driver whose target paths are
// under podsDir (kubelet's <root>/pods). Its errors are for the pod's
// author, who reads them in the pod's events.
func checkPublish(req *csi.NodePublishVolumeRequest, driver, podsDir string) error {
	if err := checkVolumeID(req.GetVolumeId()); err != nil {
		return err
	}
	uid, err := checkTarget(req.GetTargetPath(), podsDir)
	if err != nil {
		return err
	}
	ctx := req.GetVolumeContext()
	if err := checkContext(ctx); err != nil {
		return err
	}
	if ctx[ephemeralKey] != "true" {
		return fmt.Errorf("the CSI driver %s serves only inline volumes: declare it in the pod's volumes, as csi: {driver: %s, readOnly: true}, not in a PersistentVolume", driver, driver)
	}
	if !req.GetReadonly() {
		return fmt.Errorf("the volume of the CSI driver %s must be read-only: set readOnly: true in the pod's csi volume", driver)
	}
	if err := checkCapability(req.GetVolumeCapability(), driver); err != nil {
		return err
	}
	switch {
	case len(req.GetSecrets()) > 0:
		return fmt.Errorf("the CSI driver %s takes no secrets: remove nodePublishSecretRef from the pod's csi volume", driver)
	case len(req.GetPublishContext()) > 0:
		return fmt.Errorf("the CSI driver %s has no controller, so no publish context: this request is not kubelet's for an inline volume", driver)
	case req.GetStagingTargetPath() != "":
		return fmt.Errorf("the CSI driver %s stages no volume, so no staging target path: this request is not kubelet's for an inline volume", driver)
	}
	if got := ctx[podUIDKey]; got != uid {
		if got == "" {
			return fmt.Errorf("the volume context has no %s: the CSIDriver %s must have podInfoOnMount: true (kzero install sets it)", podUIDKey, driver)
		}
		return fmt.Errorf("target path is of pod %s, and the volume context of pod %s", uid, got)
	}
	return nil
}

// checkUnpublish checks what NodeUnpublishVolume reads of req.
func checkUnpublish(req *csi.NodeUnpublishVolumeRequest, podsDir string) error {
	if err := checkVolumeID(req.GetVolumeId()); err != nil {
		return err
	}
	_, err := checkTarget(req.GetTargetPath(), podsDir)
	return err
}

func checkVolumeID(id string) error {
	switch {
	case id == "":
		return errors.New("volume ID: empty")
	case len(id) > maxVolumeID:
		return fmt.Errorf("volume ID: %d bytes, over CSI's limit of %d", len(id), maxVolumeID)
	}
	return nil
}

// checkTarget checks that path is where kubelet has a pod's CSI volume
// mounted, <podsDir>/<pod UID>/volumes/kubernetes.io~csi/<volume>/mount,
// exactly so, and returns the pod's UID. Nothing else on the node is ever
// mounted over or removed.
func checkTarget(path, podsDir string) (string, error) {
	switch {
	case path == "":
		return "", errors.New("target path: empty")
	case len(path) > maxPath:
		return "", fmt.Errorf("target path: %d bytes, over the kernel's limit of %d", len(path), maxPath)
	case strings.ContainsRune(path, 0):
		return "", fmt.Errorf("target path %q: holds a NUL byte", path)
	case !filepath.IsAbs(path):
		return "", fmt.Errorf("target path %q: not absolute", path)
	case filepath.Clean(path) != path:
		return "", fmt.Errorf("target path %q: not clean (no \"..\", \".\", \"//\" or trailing \"/\")", path)
	}
	rest, ok := strings.CutPrefix(path, podsDir+"/")
	want := podsDir + "/<pod UID>/" + csiVolumesDir + "/<volume>/mount"
	if !ok {
		return "", fmt.Errorf("target path %q: not under kubelet's pods directory %s: want %s (is the agent's --kubelet-dir kubelet's --root-dir?)", path, podsDir, want)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1]+"/"+parts[2] != csiVolumesDir || parts[4] != "mount" {
		return "", fmt.Errorf("target path %q: want %s", path, want)
	}
	uid, volume := parts[0], parts[3]
	if !isPodUID(uid) {
		return "", fmt.Errorf("target path %q: %q is not a pod UID", path, uid)
	}
	if msgs := validation.IsDNS1123Label(volume); len(msgs) > 0 {
		return "", fmt.Errorf("target path %q: %q is not a volume name: %s", path, volume, strings.Join(msgs, "; "))
	}
	return uid, nil
}

// isPodUID reports whether s can be a pod's UID: a UUID for the pods of
// the API server, 32 hex digits for static pods; lower-case hex digits and
// dashes, at most 64.
func isPodUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && c != '-' {
			return false
		}
	}
	return true
}

// checkContext bounds the volume context and refuses the keys a pod's
// volumeAttributes would bring: the volume takes none.
func checkContext(ctx map[string]string) error {
	size := 0
	keys := make([]string, 0, len(ctx))
	for k, v := range ctx {
		size += len(k) + len(v)
		keys = append(keys, k)
	}
	if size > maxVolumeContext {
		return fmt.Errorf("volume context: %d bytes, over CSI's limit of %d", size, maxVolumeContext)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, kubeletKeyPrefix) {
			return fmt.Errorf("volume attribute %q: the volume takes no volumeAttributes: remove them from the pod's csi volume", k)
		}
	}
	return nil
}

// checkCapability accepts a plain mount: no block device, no file system
// type, no mount options.
func checkCapability(c *csi.VolumeCapability, driver string) error {
	switch {
	case c == nil:
		return errors.New("volume capability: missing")
	case c.GetBlock() != nil:
		return fmt.Errorf("the CSI driver %s mounts a directory, not a block device: remove fsType: block from the pod's csi volume", driver)
	case c.GetMount() == nil:
		return errors.New("volume capability: not a mount")
	case c.GetMount().GetFsType() != "":
		return fmt.Errorf("the CSI driver %s mounts a directory, with no file system type: remove fsType %q from the pod's csi volume", driver, c.GetMount().GetFsType())
	case len(c.GetMount().GetMountFlags()) > 0:
		return fmt.Errorf("the CSI driver %s takes no mount options (it mounts read-only, nosuid, nodev, noexec)", driver)
	case c.GetMount().GetVolumeMountGroup() != "":
		return fmt.Errorf("the CSI driver %s changes no group ownership: the socket is open to every user", driver)
	case c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN:
		return errors.New("volume capability: no access mode")
	}
	return nil
}

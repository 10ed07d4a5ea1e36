package csidriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config configures a Driver. Every field is required.
type Config struct {
	// Name is the driver's name, the CSIDriver object's and the pods'
	// volumes': v1alpha1.CSIDriverName.
	Name string
	// NodeID is this node's name, which NodeGetInfo reports.
	NodeID string
	// Version is the driver's version, which GetPluginInfo reports.
	Version string
	// SourceDir is the directory bound into pods: the Workload API's
	// (v1alpha1.WorkloadAPIDir). Absolute.
	SourceDir string
	// KubeletDir is kubelet's root directory (its --root-dir), at the
	// same path as on the node: every target path is under its pods/.
	// Absolute.
	KubeletDir string
	// Endpoint is the CSI socket's path, which kubelet dials: at the same
	// path in the agent and on the node. Absolute.
	Endpoint string
	// RegistrationSocket is the path of the socket on which kubelet finds
	// the driver, in its plugins_registry directory. Absolute.
	RegistrationSocket string
	// Log receives every publish, unpublish and refusal.
	Log *slog.Logger
}

// maxSocketPath is the longest path a unix socket may have: sun_path holds
// 108 bytes with the NUL.
const maxSocketPath = 107

func (c Config) check() error {
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(c.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("name %q: %s", c.Name, strings.Join(msgs, "; ")))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("nodeID: required"))
	} else if len(c.NodeID) > maxVolumeID {
		errs = append(errs, fmt.Errorf("nodeID: %d bytes, over CSI's limit of %d", len(c.NodeID), maxVolumeID))
	}
	for _, p := range []struct{ field, path string }{
		{"sourceDir", c.SourceDir}, {"kubeletDir", c.KubeletDir}, {"endpoint", c.Endpoint}, {"registrationSocket", c.RegistrationSocket},
	} {
		switch {
		case p.path == "":
			errs = append(errs, fmt.Errorf("%s: required", p.field))
		case !filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path:
			errs = append(errs, fmt.Errorf("%s %q: want an absolute, clean path", p.field, p.path))
		case p.field == "kubeletDir" && p.path == "/":
			errs = append(errs, errors.New(`kubeletDir "/": want kubelet's root directory, such as /var/lib/kubelet`))
		case (p.field == "endpoint" || p.field == "registrationSocket") && len(p.path) > maxSocketPath:
			errs = append(errs, fmt.Errorf("%s %q: %d bytes, over the %d a unix socket's path may have", p.field, p.path, len(p.path), maxSocketPath))
		}
	}
	if c.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("csidriver: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// Driver is the CSI node plugin: the CSI Identity and Node services, and
// kubelet's plugin registration. Create it with New and call Run once; its
// methods are the RPCs, safe for concurrent use.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer

	cfg     Config
	podsDir string
	// mounts serializes publish and unpublish: kubelet may retry a call
	// that is still running, and a mount takes a millisecond.
	mounts  sync.Mutex
	started atomic.Bool
}

// New checks cfg and returns the driver; it opens no socket until Run.
func New(cfg Config) (*Driver, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, podsDir: filepath.Join(cfg.KubeletDir, "pods")}, nil
}

// GetPluginInfo names the driver.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.cfg.Name, VendorVersion: d.cfg.Version}, nil
}

// GetPluginCapabilities reports none: there is no controller service, and
// no topology.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe answers that the driver is ready: it needs nothing to publish.
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// NodeGetInfo names the node.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.cfg.NodeID}, nil
}

// NodeGetCapabilities reports none: no staging, no statistics.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

// NodePublishVolume binds the Workload API's directory, read-only, at the
// request's target path, once checkPublish has accepted it: a refusal is
// InvalidArgument with a message for the pod's author, which kubelet puts
// in the pod's events. Publishing a target again is no error.
func (d *Driver) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	ctx := req.GetVolumeContext()
	log := d.cfg.Log.With("volumeID", req.GetVolumeId(), "targetPath", req.GetTargetPath(),
		"pod", ctx[kubeletKeyPrefix+"pod.namespace"]+"/"+ctx[kubeletKeyPrefix+"pod.name"])
	if err := checkPublish(req, d.cfg.Name, d.podsDir); err != nil {
		log.Warn("refused to publish a volume", "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.mounts.Lock()
	defer d.mounts.Unlock()
	if err := publish(d.cfg.SourceDir, req.GetTargetPath()); err != nil {
		log.Error("publishing a volume failed", "error", err)
		return nil, status.Errorf(codes.Internal, "publish the Workload API's directory: %v", err)
	}
	log.Info("published the Workload API's directory, read-only")
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target path and removes it. A target
// already gone is no error.
func (d *Driver) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	log := d.cfg.Log.With("volumeID", req.GetVolumeId(), "targetPath", req.GetTargetPath())
	if err := checkUnpublish(req, d.podsDir); err != nil {
		log.Warn("refused to unpublish a volume", "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d.mounts.Lock()
	defer d.mounts.Unlock()
	if err := unpublish(req.GetTargetPath()); err != nil {
		log.Error("unpublishing a volume failed", "error", err)
		return nil, status.Errorf(codes.Internal, "unpublish: %v", err)
	}
	log.Info("unpublished a volume")
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/csidriver"
	"kzero.dev/kzero/internal/version"
)

// csiFlags are the bootstrap settings of `kzero agent csi-driver`.
type csiFlags struct {
	nodeName     string
	dir          string
	kubeletDir   string
	csiSocket    string
	csiRegSocket string
}

// maxSocketPath is the longest path a unix socket may have: sun_path holds
// 108 bytes with the NUL.
const maxSocketPath = 107

// csiDriverCommand is `kzero agent csi-driver`: the agent's CSI driver,
// which kzero install runs in a container of the agent's pod of its own,
// the only privileged one, so that the Workload API, which every pod of
// the node reaches, runs with no privilege at all.
func csiDriverCommand() *cobra.Command {
	f := csiFlags{}
	cmd := &cobra.Command{
		Use:   "csi-driver",
		Short: "Serve the CSI driver that brings the Workload API's socket into pods, read-only",
		Long: `Serves the CSI driver ` + v1alpha1.CSIDriverName + ` to kubelet on --csi-socket, and registers
it through --csi-registration-socket, in kubelet's plugins_registry. A
pod's inline volume of that driver (readOnly: true, no attributes) is the
directory --workload-api-dir, which the agent's container shares, bound at
the volume's path read-only, nosuid, nodev and noexec: that is how the pods
of enrolled namespaces reach the agent's socket with Pod Security
restricted. Every field kubelet passes on is checked before anything is
mounted; a refusal is in the pod's events.

The mounts take CAP_SYS_ADMIN, and kubelet's pods directory under
--kubelet-dir at the same path as on the node with Bidirectional mount
propagation: kzero install's DaemonSet runs this container privileged, and
the agent's own container without any privilege. Linux 5.12 or later.
Logs (JSON) go to stderr. It stops on SIGTERM or interrupt, removing its
sockets; volumes already mounted stay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCSIDriver(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.nodeName, "node-name", "", "this node's name; empty: $"+nodeNameEnv)
	fl.StringVar(&f.dir, "workload-api-dir", v1alpha1.WorkloadAPIDir, "the directory of the Workload API's socket, shared with the agent, bound into pods read-only")
	fl.StringVar(&f.kubeletDir, "kubelet-dir", v1alpha1.KubeletDir, "kubelet's root directory (its --root-dir), mounted at the same path as on the node")
	fl.StringVar(&f.csiSocket, "csi-socket", "", "the CSI driver's unix socket, which kubelet dials; empty: <--kubelet-dir>/plugins/"+v1alpha1.CSIDriverName+"/csi.sock")
	fl.StringVar(&f.csiRegSocket, "csi-registration-socket", "", "the unix socket on which kubelet finds the CSI driver; empty: <--kubelet-dir>/plugins_registry/"+v1alpha1.CSIDriverName+"-reg.sock")
	return cmd
}

// validate checks the flags, with getenv for the default of --node-name,
// and returns the driver's configuration but its log.
func (f csiFlags) validate(getenv func(string) string) (csidriver.Config, error) {
	node, err := nodeName(f.nodeName, getenv)
	if err != nil {
		return csidriver.Config{}, err
	}
	if !filepath.IsAbs(f.dir) || filepath.Clean(f.dir) != f.dir || filepath.Dir(f.dir) == "/" {
		return csidriver.Config{}, fmt.Errorf("--workload-api-dir %q: want the directory of the agent's socket alone, an absolute, clean path such as %s: everything in it is shown to pods", f.dir, v1alpha1.WorkloadAPIDir)
	}
	if !filepath.IsAbs(f.kubeletDir) || filepath.Clean(f.kubeletDir) != f.kubeletDir || f.kubeletDir == "/" {
		return csidriver.Config{}, fmt.Errorf("--kubelet-dir %q: want kubelet's root directory (its --root-dir), an absolute, clean path such as %s", f.kubeletDir, v1alpha1.KubeletDir)
	}
	cfg := csidriver.Config{Name: v1alpha1.CSIDriverName, NodeID: node, Version: version.Get().Version,
		SourceDir: f.dir, KubeletDir: f.kubeletDir, Endpoint: f.csiSocket, RegistrationSocket: f.csiRegSocket}
	if cfg.Endpoint == "" {
		cfg.Endpoint = filepath.Join(f.kubeletDir, "plugins", v1alpha1.CSIDriverName, "csi.sock")
	}
	if cfg.RegistrationSocket == "" {
		cfg.RegistrationSocket = filepath.Join(f.kubeletDir, "plugins_registry", v1alpha1.CSIDriverName+"-reg.sock")
	}
	for _, p := range []struct{ flag, path string }{{"--csi-socket", cfg.Endpoint}, {"--csi-registration-socket", cfg.RegistrationSocket}} {
		switch {
		case !filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path:
			return csidriver.Config{}, fmt.Errorf("%s %q: want an absolute, clean path", p.flag, p.path)
		case len(p.path) > maxSocketPath:
			return csidriver.Config{}, fmt.Errorf("%s %q: %d bytes, over the %d a unix socket's path may have: give a shorter path (or a shorter --kubelet-dir)", p.flag, p.path, len(p.path), maxSocketPath)
		}
	}
	if dir := filepath.Join(f.kubeletDir, "plugins_registry"); filepath.Dir(cfg.RegistrationSocket) != dir {
		return csidriver.Config{}, fmt.Errorf("--csi-registration-socket %q: not in %s, where kubelet looks for plugins", cfg.RegistrationSocket, dir)
	}
	return cfg, nil
}

func runCSIDriver(cmd *cobra.Command, f csiFlags) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := f.validate(os.Getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("component", "csi-driver", "driver", v1alpha1.CSIDriverName)
	cfg.Log = log
	driver, err := csidriver.New(cfg)
	if err != nil {
		return err
	}
	err = driver.Run(ctx)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped")
		return nil
	}
	return err
}

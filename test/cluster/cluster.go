package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Mode is how much of Kubernetes a cluster runs.
type Mode string

const (
	// ModeControlPlane runs etcd and kube-apiserver only: it starts in
	// seconds and suits webhook and controller tests.
	ModeControlPlane Mode = "control-plane"
	// ModeNode runs a whole node: pods run, with a pod network and
	// ClusterIP Services.
	ModeNode Mode = "node"
)

// The addresses and names the harness uses (hack/cluster/lib.sh).
const (
	// PodCIDR is the pod range, on the bridge Bridge.
	PodCIDR = "10.244.0.0/24"
	// GuardCIDR holds PodCIDR and is routed to Sink, so that no pod
	// address follows the default route.
	GuardCIDR = "10.244.0.0/16"
	// ServiceCIDR is the ClusterIP range, routed to Sink.
	ServiceCIDR = "10.96.0.0/24"
	// NodeIP is the node's address, on Bridge: kube-apiserver and kubelet
	// bind it.
	NodeIP = "10.244.0.1"
	// APIServerPort is kube-apiserver's port on NodeIP.
	APIServerPort = 6443
	// NodeName is the node's name.
	NodeName = "kzero-node"
	// Bridge is the pod network's bridge.
	Bridge = "kzero0"
	// Sink is a bridge without ports: what is routed to it is dropped.
	Sink = "kzero-svc0"
	// RouteTable is the routing table for packets from pods; it knows
	// only PodCIDR.
	RouteTable = 2440
	// PauseImage is the pod sandbox image that cluster-up imports.
	PauseImage = "kzero.local/pause:v1"
)

// Harness runs the hack/cluster scripts of one repository checkout. Its
// methods are not safe for concurrent use: one cluster runs at a time.
type Harness struct {
	// Root is the repository's top directory, holding hack/cluster.
	Root string
	// RunDir holds the running cluster's state (KZERO_RUN_DIR).
	RunDir string
	// CacheDir holds built binaries and images (KZERO_CACHE_DIR).
	CacheDir string
	// Log receives the scripts' progress output; nil discards it.
	Log io.Writer
}

// Default returns the harness of the repository that holds the working
// directory, with KZERO_RUN_DIR and KZERO_CACHE_DIR taken from the
// environment as the scripts take them.
func Default() (*Harness, error) {
	root, err := findRoot()
	if err != nil {
		return nil, err
	}
	h := &Harness{
		Root:     root,
		RunDir:   filepath.Join(root, ".run", "cluster"),
		CacheDir: filepath.Join(root, ".cache"),
	}
	if d := os.Getenv("KZERO_RUN_DIR"); d != "" {
		h.RunDir = d
	}
	if d := os.Getenv("KZERO_CACHE_DIR"); d != "" {
		h.CacheDir = d
	}
	return h, nil
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "cluster", "lib.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cluster: no hack/cluster/lib.sh above the working directory: run the test inside the kzero repository")
		}
		dir = parent
	}
}

// Running reports the mode of the cluster that RunDir records, if any. It
// does not check that the cluster's processes are alive.
func (h *Harness) Running() (Mode, bool) {
	b, err := os.ReadFile(filepath.Join(h.RunDir, "mode"))
	if err != nil {
		return "", false
	}
	return Mode(strings.TrimSpace(string(b))), true
}

// Up runs `make cluster-up MODE=mode` and returns when the cluster is ready.
func (h *Harness) Up(ctx context.Context, mode Mode) error {
	return h.make(ctx, "cluster-up", "MODE="+string(mode))
}

// Down runs `make cluster-down`.
func (h *Harness) Down(ctx context.Context) error {
	return h.make(ctx, "cluster-down")
}

func (h *Harness) make(ctx context.Context, args ...string) error {
	args = append([]string{"--no-print-directory", "-f", filepath.Join("hack", "cluster", "cluster.mk")}, args...)
	return h.run(ctx, "make", args...)
}

func (h *Harness) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = h.Root
	cmd.Env = append(os.Environ(), "KZERO_RUN_DIR="+h.RunDir, "KZERO_CACHE_DIR="+h.CacheDir)
	var tail bytes.Buffer
	out := io.Writer(&tail)
	if h.Log != nil {
		out = io.MultiWriter(h.Log, &tail)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cluster: %s %s: %w\n%s", name, strings.Join(args, " "), err, lastLines(tail.String(), 20))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The request rate of the clients the harness makes: far above what a
// test needs, so that kube-apiserver, not the client, sets the pace.
const (
	ClientQPS   = 1000
	ClientBurst = 2000
)

// Cluster is a running cluster, seen as its admin.
type Cluster struct {
	// Mode is what the cluster runs.
	Mode Mode
	// Kubeconfig is the admin kubeconfig's path.
	Kubeconfig string
	// Config is the admin's client configuration.
	Config *rest.Config
	// Client is a client-go clientset for Config.
	Client kubernetes.Interface

	h *Harness
}

// Cluster returns the running cluster, or an error that says how to start
// one.
func (h *Harness) Cluster() (*Cluster, error) {
	mode, ok := h.Running()
	if !ok {
		return nil, fmt.Errorf("cluster: no cluster is running in %s: start one with 'make cluster-up' (or MODE=control-plane)", h.RunDir)
	}
	kubeconfig := filepath.Join(h.RunDir, "admin.kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: load %s: %w", kubeconfig, err)
	}
	// Tests create objects in bursts; client-go's default of 5 requests
	// a second would make them measure the client, not the cluster.
	cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: client: %w", err)
	}
	return &Cluster{Mode: mode, Kubeconfig: kubeconfig, Config: cfg, Client: client, h: h}, nil
}

// KubeletDir is kubelet's root directory (its --root-dir) on the node, a
// shared mount (hack/cluster/up.sh): what kzero install's KubeletDir must
// be for the agent's CSI driver on this cluster. It needs a cluster in
// node mode.
func (c *Cluster) KubeletDir() string {
	return filepath.Join(c.h.RunDir, "kubelet", "root")
}

// ProjectedVolumeDir is where kubelet writes the projected volume named
// volume of the pod with the given UID. It needs a cluster in node mode;
// reading it needs root, as kubelet does.
func (c *Cluster) ProjectedVolumeDir(podUID, volume string) string {
	return filepath.Join(c.KubeletDir(), "pods", podUID, "volumes", "kubernetes.io~projected", volume)
}

// LoadImage builds the Go package pkg (a path in the repository such as
// ./test/e2e/testserver) as a static binary, the image's entrypoint, and
// each package of also beside it (at /<its directory's name>), packs them
// as the image ref and imports it into the node's containerd. Pods then
// use ref with imagePullPolicy IfNotPresent or Never. It needs a cluster in
// node mode.
func (c *Cluster) LoadImage(ctx context.Context, pkg, ref string, also ...string) error {
	if c.Mode != ModeNode {
		return fmt.Errorf("cluster: LoadImage needs a node, and the cluster runs in %s mode: run 'make cluster-down cluster-up'", c.Mode)
	}
	args := []string{filepath.Join("hack", "cluster", "image.sh")}
	for _, p := range also {
		args = append(args, "--also", p)
	}
	return c.h.run(ctx, "bash", append(args, pkg, ref)...)
}

package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

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

// The names and addresses that do not depend on the cluster
// (hack/cluster/lib.sh).
const (
	// APIServerPort is kube-apiserver's port on a cluster's HostIP.
	APIServerPort = 6443
	// PauseImage is the pod sandbox image that cluster-up imports.
	PauseImage = "kzero.local/pause:v1"
	// KubeletDir is kubelet's root directory as a node's processes and
	// pods see it (kzero install's default): each node has its own, a
	// shared mount of the node's directory under the run directory.
	KubeletDir = "/var/lib/kubelet"
	// MaxNodes is the most nodes a cluster has on this machine.
	MaxNodes = 3
)

// Layout is where a cluster's addresses and devices are. Each cluster has
// an index, 0 for the default one and 1 to 3 for named ones, that keys its
// ranges, so that two clusters never overlap (docs/cluster.md). With
// P = 10.(244+index): the cluster network is P.0.0/24 on the machine's
// bridge, node i is P.0.(10+i) and its pods are P.i.0/24.
type Layout struct {
	// Index is the cluster's index.
	Index int
	// HostIP is the machine's address on the cluster network:
	// kube-apiserver binds it, and the nodes reach the machine there.
	HostIP string
	// ClusterNet is the nodes' network, on Bridge.
	ClusterNet string
	// GuardCIDR holds ClusterNet and every pod range and is routed to
	// Sink, so that no address of the cluster follows the default route.
	GuardCIDR string
	// ServiceCIDR is the ClusterIP range, routed to Sink.
	ServiceCIDR string
	// Bridge joins the machine and the nodes.
	Bridge string
	// Sink is a bridge without ports: what is routed to it is dropped.
	Sink string
	// RouteTable routes the packets from the cluster's addresses; it knows
	// only the cluster's ranges.
	RouteTable int
	// Loopback is the loopback address the control plane's other
	// processes (etcd, kube-controller-manager, kube-scheduler) bind.
	Loopback string
}

// LayoutOf returns the layout of the cluster with index c (0 to 3).
func LayoutOf(c int) Layout {
	p := fmt.Sprintf("10.%d", 244+c)
	return Layout{
		Index:       c,
		HostIP:      p + ".0.1",
		ClusterNet:  p + ".0.0/24",
		GuardCIDR:   p + ".0.0/16",
		ServiceCIDR: fmt.Sprintf("10.%d.0.0/24", 96+c),
		Bridge:      fmt.Sprintf("kzero%d", c),
		Sink:        fmt.Sprintf("kzero-svc%d", c),
		RouteTable:  2440 + c,
		Loopback:    fmt.Sprintf("127.0.%d.1", c),
	}
}

// NodeIP is node i's address on the cluster network.
func (l Layout) NodeIP(i int) string {
	return fmt.Sprintf("10.%d.0.%d", 244+l.Index, 10+i)
}

// NodePodCIDR is node i's pod range.
func (l Layout) NodePodCIDR(i int) string {
	return fmt.Sprintf("10.%d.%d.0/24", 244+l.Index, i)
}

// InRanges reports whether addr is one the cluster owns: the machine's or
// a node's, a pod's or a Service's. Tests check an address with it before
// they send to it from the machine.
func (l Layout) InRanges(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, c := range []string{l.GuardCIDR, l.ServiceCIDR} {
		if netip.MustParsePrefix(c).Contains(a) {
			return true
		}
	}
	return false
}

// Harness runs the hack/cluster scripts of one repository checkout for one
// cluster: the default one, or a named one beside it. Its methods are not
// safe for concurrent use; two harnesses of different clusters are.
type Harness struct {
	// Root is the repository's top directory, holding hack/cluster.
	Root string
	// Name is the cluster's name (CLUSTER=NAME); empty for the default
	// cluster.
	Name string
	// RunDir holds the cluster's state (KZERO_RUN_DIR).
	RunDir string
	// CacheDir holds built binaries and images (KZERO_CACHE_DIR).
	CacheDir string
	// Log receives the scripts' progress output; nil discards it.
	Log io.Writer

	kubectlOnce sync.Once
	kubectlPath string
	kubectlErr  error
}

// Default returns the harness of the default cluster of the repository
// that holds the working directory, with KZERO_RUN_DIR and KZERO_CACHE_DIR
// taken from the environment as the scripts take them.
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

// validName is what lib.sh accepts as CLUSTER.
var validName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,14}[a-z0-9])?$`)

// Named returns the harness of the cluster named name, beside the default
// one: its state is in the directory beside the default cluster's, with
// "-name" added.
func Named(name string) (*Harness, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("cluster: name %q: want 1 to 16 lowercase letters, digits and dashes, starting with a letter", name)
	}
	h, err := Default()
	if err != nil {
		return nil, err
	}
	h.Name = name
	h.RunDir += "-" + name
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

// Up runs `make cluster-up MODE=mode NODES=nodes` and returns when the
// cluster is ready. nodes is ignored in control-plane mode.
func (h *Harness) Up(ctx context.Context, mode Mode, nodes int) error {
	if mode == ModeControlPlane {
		nodes = 1
	}
	if nodes < 1 || nodes > MaxNodes {
		return fmt.Errorf("cluster: %d nodes: a cluster has 1 to %d on this machine", nodes, MaxNodes)
	}
	return h.make(ctx, "cluster-up", "MODE="+string(mode), "NODES="+strconv.Itoa(nodes))
}

// Down runs `make cluster-down`.
func (h *Harness) Down(ctx context.Context) error {
	return h.make(ctx, "cluster-down")
}

func (h *Harness) make(ctx context.Context, args ...string) error {
	args = append([]string{"--no-print-directory", "-f", filepath.Join("hack", "cluster", "cluster.mk")}, args...)
	args = append(args, "CLUSTER="+h.Name)
	return h.run(ctx, "make", args...)
}

func (h *Harness) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = h.Root
	cmd.Env = append(os.Environ(), "KZERO_RUN_DIR="+h.RunDir, "KZERO_CACHE_DIR="+h.CacheDir, "CLUSTER="+h.Name)
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

// Node is one node of a running cluster.
type Node struct {
	// Name is the node's name, its kubelet's and its hostname.
	Name string
	// IP is its address on the cluster network.
	IP string
	// PodCIDR is its pods' range.
	PodCIDR string
}

// Cluster is a running cluster, seen as its admin.
type Cluster struct {
	// Mode is what the cluster runs.
	Mode Mode
	// Layout is where its addresses and devices are.
	Layout Layout
	// Nodes are its nodes, in order; none in control-plane mode.
	Nodes []Node
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
	up := "make cluster-up"
	if h.Name != "" {
		up += " CLUSTER=" + h.Name
	}
	if !ok {
		return nil, fmt.Errorf("cluster: no cluster is running in %s: start one with '%s' (or MODE=control-plane)", h.RunDir, up)
	}
	b, err := os.ReadFile(filepath.Join(h.RunDir, "index"))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w; restart the cluster with 'make cluster-down cluster-up'", err)
	}
	index, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || index < 0 || index > 3 {
		return nil, fmt.Errorf("cluster: %s/index holds %q, not 0 to 3; restart the cluster", h.RunDir, b)
	}
	nodes, err := readNodes(filepath.Join(h.RunDir, "nodes"))
	if err != nil {
		return nil, err
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
	return &Cluster{Mode: mode, Layout: LayoutOf(index), Nodes: nodes, Kubeconfig: kubeconfig, Config: cfg, Client: client, h: h}, nil
}

// readNodes reads the nodes file up.sh writes: "NAME IP POD-CIDR" a line.
func readNodes(file string) ([]Node, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a cluster of an older harness, or control-plane mode
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var nodes []Node
	for _, l := range lines(string(b)) {
		f := strings.Fields(l)
		if len(f) != 3 {
			return nil, fmt.Errorf("cluster: %s: line %q: want NAME IP POD-CIDR", file, l)
		}
		nodes = append(nodes, Node{Name: f[0], IP: f[1], PodCIDR: f[2]})
	}
	return nodes, nil
}

// Node returns the node named name.
func (c *Cluster) Node(name string) (Node, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("cluster: no node %q in this cluster (it has %d)", name, len(c.Nodes))
}

// NodeConfig is a client configuration with the credentials of node's
// kubelet (system:node:<node>), at the harness's request rate.
func (c *Cluster) NodeConfig(node string) (*rest.Config, error) {
	if _, err := c.Node(node); err != nil {
		return nil, err
	}
	path := filepath.Join(c.h.RunDir, "pki", "kubelet-"+node+".kubeconfig")
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("cluster: the kubeconfig of %s's kubelet: %w", node, err)
	}
	cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	return cfg, nil
}

// NodeInit returns the PID (on the machine) of node's init, PID 1 of its
// namespaces, after checking that it is still the harness's process.
func (c *Cluster) NodeInit(node string) (int, error) {
	if _, err := c.Node(node); err != nil {
		return 0, err
	}
	f := filepath.Join(c.h.RunDir, "pids", node+".init.pid")
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, fmt.Errorf("cluster: node %s is not running: %w", node, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, fmt.Errorf("cluster: %s holds %q, want PID BINARY", f, b)
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, fmt.Errorf("cluster: %s: %w", f, err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != fields[1] {
		return 0, fmt.Errorf("cluster: node %s's init (pid %d) is gone; restart the cluster with 'make cluster-down cluster-up'", node, pid)
	}
	return pid, nil
}

// NodeCommand returns a command that runs args in node's namespaces
// (mount, UTS, IPC, network and PID), as its own processes run: what it
// sees as /, /run, /var/lib/kubelet, its network and its processes are
// the node's.
func (c *Cluster) NodeCommand(ctx context.Context, node string, args ...string) (*exec.Cmd, error) {
	pid, err := c.NodeInit(node)
	if err != nil {
		return nil, err
	}
	ns := []string{"--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net", "--pid", "--"}
	return exec.CommandContext(ctx, "nsenter", append(ns, args...)...), nil
}

// NodeExec runs args in node's namespaces and returns their output
// (stdout and stderr), with an error that holds it when they fail.
func (c *Cluster) NodeExec(ctx context.Context, node string, args ...string) ([]byte, error) {
	cmd, err := c.NodeCommand(ctx, node, args...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("cluster: on %s: %s: %w: %s", node, strings.Join(args, " "), err, lastLines(string(out), 10))
	}
	return out, nil
}

// NodePath returns the machine's path to path as node's processes see it,
// through its init's root (/proc/PID/root): a test reads the node's files
// and dials its unix sockets there. It needs root.
func (c *Cluster) NodePath(node, path string) (string, error) {
	pid, err := c.NodeInit(node)
	if err != nil {
		return "", err
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", pid), path), nil
}

// ProjectedVolumeDir is where node's kubelet writes the projected volume
// named volume of the pod with the given UID, as the machine sees it;
// reading it needs root, as kubelet does.
func (c *Cluster) ProjectedVolumeDir(node, podUID, volume string) (string, error) {
	return c.NodePath(node, filepath.Join(KubeletDir, "pods", podUID, "volumes", "kubernetes.io~projected", volume))
}

// Kubectl runs the cluster's kubectl (the one cluster-up built) as the
// admin and returns its output (stdout and stderr), with an error that
// holds it when kubectl fails.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	kubectl, err := c.h.kubectl()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("cluster: kubectl %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 10))
	}
	return out, nil
}

// kubectl is the path of the kubectl that cluster-up built: in the cache,
// under the Kubernetes version that hack/k8s/go.mod pins, as lib.sh finds
// it. It reads go.mod once.
func (h *Harness) kubectl() (string, error) {
	h.kubectlOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join(h.Root, "hack", "k8s", "go.mod"))
		if err != nil {
			h.kubectlErr = fmt.Errorf("cluster: %w", err)
			return
		}
		for _, l := range lines(string(b)) {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "k8s.io/kubernetes" && strings.HasPrefix(f[1], "v") {
				h.kubectlPath = filepath.Join(h.CacheDir, "k8s", f[1], "bin", "kubectl")
				return
			}
		}
		h.kubectlErr = errors.New("cluster: hack/k8s/go.mod names no k8s.io/kubernetes version")
	})
	return h.kubectlPath, h.kubectlErr
}

// ImageBinary is the program that LoadImage built as the entrypoint of the
// image ref, on the machine: a test runs it on a node, outside any pod,
// with NodeExec.
func (c *Cluster) ImageBinary(ref string) string {
	name, _, _ := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	return filepath.Join(c.h.CacheDir, "images", "bin", name)
}

// LoadImage builds the Go package pkg (a path in the repository such as
// ./test/e2e/testserver) as a static binary, the image's entrypoint, and
// each package of also beside it (at /<its directory's name>), packs them
// as the image ref and imports it into every node's containerd. Pods then
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

package csidriver_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"kzero.dev/kzero/internal/csidriver"
)

const (
	driverName = "csi.kzero.dev"
	podUID     = "3a60b6d9-852f-40bc-bfa6-9e8891d96dbe"
)

// node is a node's directories, in a temporary directory: kubelet's root,
// and the agent's socket directory with a file in it.
type node struct {
	kubelet, source, endpoint, registration string
}

func newNode(t *testing.T) node {
	t.Helper()
	// Not t.TempDir: its path may exceed what a unix socket's path takes.
	dir, err := os.MkdirTemp("", "csi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := node{
		kubelet: filepath.Join(dir, "kubelet"),
		source:  filepath.Join(dir, "agent"),
	}
	n.endpoint = filepath.Join(n.kubelet, "plugins", driverName, "csi.sock")
	n.registration = filepath.Join(n.kubelet, "plugins_registry", driverName+"-reg.sock")
	for _, d := range []string{n.source, filepath.Join(n.kubelet, "plugins_registry")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(n.source, "agent.sock"), []byte("the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// target makes the parent of a pod's CSI volume, as kubelet does before
// it calls NodePublishVolume, and returns the target path.
func (n node) target(t *testing.T, uid, volume string) string {
	t.Helper()
	dir := filepath.Join(n.kubelet, "pods", uid, "volumes", "kubernetes.io~csi", volume)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "mount")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

// run runs a driver of the node until the returned func stops it.
func (n node) run(t *testing.T) (stop func() error) {
	t.Helper()
	d, err := csidriver.New(csidriver.Config{
		Name: driverName, NodeID: "node-a", SourceDir: n.source, KubeletDir: n.kubelet,
		Endpoint: n.endpoint, RegistrationSocket: n.registration, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// A new agent may start before the old one has stopped (a DaemonSet's
// pod replaced): the new one takes the sockets over, and the old one,
// stopping, leaves them be.
func TestANewDriverKeepsItsSockets(t *testing.T) {
	n := newNode(t)
	stopOld := n.run(t)
	waitFor(t, n.registration)
	old, err := os.Lstat(n.registration)
	if err != nil {
		t.Fatal(err)
	}
	n.run(t)
	eventually(t, "the new driver's socket", func() bool {
		fi, err := os.Lstat(n.registration)
		return err == nil && !os.SameFile(fi, old)
	})
	if err := stopOld(); !errors.Is(err, context.Canceled) {
		t.Errorf("the old driver's Run = %v, want context.Canceled", err)
	}
	for _, p := range []string{n.endpoint, n.registration} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the old driver, stopping, removed the new one's %s: %v", p, err)
		}
	}
	conn, err := grpc.NewClient("unix:"+n.registration, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := registerapi.NewRegistrationClient(conn).GetInfo(t.Context(), &registerapi.InfoRequest{}); err != nil {
		t.Errorf("the new driver's registration socket: %v", err)
	}
}

func waitFor(t *testing.T, path string) {
	t.Helper()
	eventually(t, path, func() bool { _, err := os.Stat(path); return err == nil })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs the driver and returns a client of each of its sockets, and
// Run's error once it has returned.
func (n node) start(t *testing.T) (csi.NodeClient, csi.IdentityClient, registerapi.RegistrationClient, func() error) {
	t.Helper()
	d, err := csidriver.New(csidriver.Config{
		Name: driverName, NodeID: "node-a", Version: "v0.1.0", SourceDir: n.source, KubeletDir: n.kubelet,
		Endpoint: n.endpoint, RegistrationSocket: n.registration,
		Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runErr = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	wait := func() error {
		select {
		case <-done:
			return runErr
		case <-time.After(10 * time.Second):
			t.Fatal("Run goes on")
			return nil
		}
	}
	for _, p := range []string{n.endpoint, n.registration} {
		waitFor(t, p)
	}
	dial := func(path string) *grpc.ClientConn {
		// As kubelet dials: the plain path, over unix.
		c, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	csiConn := dial(n.endpoint)
	return csi.NewNodeClient(csiConn), csi.NewIdentityClient(csiConn), registerapi.NewRegistrationClient(dial(n.registration)), wait
}

// publishRequest is what kubelet asks for the inline volume name of pod
// podUID at target.
func publishRequest(target string, readOnly bool) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId: "csi-5b2f", TargetPath: target, Readonly: readOnly,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.uid": podUID,
			"csi.storage.k8s.io/pod.name": "web-0", "csi.storage.k8s.io/pod.namespace": "shop",
			"csi.storage.k8s.io/serviceAccount.name": "web",
		},
	}
}

// Kubelet's registration: it finds the socket in plugins_registry, learns
// the driver's name, CSI socket and version, and then calls the driver on
// that socket. A refusal stops the driver with kubelet's reason, and the
// sockets are gone once it has stopped.
func TestKubeletRegistration(t *testing.T) {
	n := newNode(t)
	nodeClient, identity, reg, wait := n.start(t)
	info, err := reg.GetInfo(t.Context(), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != "CSIPlugin" || info.Name != driverName || info.Endpoint != n.endpoint || strings.Join(info.SupportedVersions, ",") != "1.0.0" {
		t.Errorf("GetInfo = %v", info)
	}
	if _, err := reg.NotifyRegistrationStatus(t.Context(), &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	pi, err := identity.GetPluginInfo(t.Context(), &csi.GetPluginInfoRequest{})
	if err != nil || pi.Name != driverName || pi.VendorVersion != "v0.1.0" {
		t.Errorf("GetPluginInfo = %v, %v", pi, err)
	}
	ni, err := nodeClient.NodeGetInfo(t.Context(), &csi.NodeGetInfoRequest{})
	if err != nil || ni.NodeId != "node-a" {
		t.Errorf("NodeGetInfo = %v, %v", ni, err)
	}
	if _, err := nodeClient.NodeStageVolume(t.Context(), &csi.NodeStageVolumeRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("NodeStageVolume: %v, want Unimplemented", err)
	}

	if _, err := reg.NotifyRegistrationStatus(t.Context(), &registerapi.RegistrationStatus{Error: "plugin csi.kzero.dev: version 9.0.0 unsupported"}); err != nil {
		t.Fatal(err)
	}
	err = wait()
	if want := "csidriver: kubelet refused to register the CSI driver csi.kzero.dev: plugin csi.kzero.dev: version 9.0.0 unsupported"; err == nil || err.Error() != want {
		t.Errorf("Run = %v, want %s", err, want)
	}
	for _, p := range []string{n.endpoint, n.registration} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after Run: %v", p, err)
		}
	}
}

// A pod's volume: the agent's directory, read-only (a write fails with
// EROFS), nosuid, nodev, noexec, while the agent's own directory stays
// writable; publishing again changes nothing; unpublishing removes it,
// twice over.
func TestPublishMountsReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root (CAP_SYS_ADMIN): run the tests as root to test the mounts")
	}
	n := newNode(t)
	client, _, _, _ := n.start(t)
	target := n.target(t, podUID, "kzero-workload-api")

	_, err := client.NodePublishVolume(t.Context(), publishRequest(target, false))
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() !=
		"the volume of the CSI driver csi.kzero.dev must be read-only: set readOnly: true in the pod's csi volume" {
		t.Errorf("a writable volume: %v, want InvalidArgument", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused publish made %s: %v", target, err)
	}

	for range 2 {
		if _, err := client.NodePublishVolume(t.Context(), publishRequest(target, true)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "agent.sock")); err != nil || string(b) != "the agent's" {
		t.Errorf("the agent's file through the volume: %q, %v", b, err)
	}
	err = os.WriteFile(filepath.Join(target, "planted"), nil, 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("a write through the volume: %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(target, "agent.sock")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("removing the socket through the volume: %v, want EROFS", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		t.Fatal(err)
	}
	if want := int64(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC); st.Flags&want != want {
		t.Errorf("the volume's mount flags %#x lack some of ro, nosuid, nodev, noexec (%#x)", st.Flags, want)
	}
	if mounts := countMounts(t, target); mounts != 1 {
		t.Errorf("%d mounts at %s after two publishes, want 1", mounts, target)
	}
	if err := os.WriteFile(filepath.Join(n.source, "next.sock"), nil, 0o644); err != nil {
		t.Errorf("the agent's own directory is no longer writable: %v", err)
	}

	for range 2 {
		if _, err := client.NodeUnpublishVolume(t.Context(), &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-5b2f", TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is left after unpublish: %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(n.source, "agent.sock")); err != nil {
		t.Errorf("unpublish touched the agent's directory: %v", err)
	}
}

// A target holding the directory writable (not publish's doing) is
// published again read-only; a target bound to another directory is
// refused.
func TestPublishRepairsAndRefusesOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root (CAP_SYS_ADMIN): run the tests as root to test the mounts")
	}
	n := newNode(t)
	client, _, _, _ := n.start(t)

	writable := n.target(t, podUID, "half-done")
	if err := os.Mkdir(writable, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(n.source, writable, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NodePublishVolume(t.Context(), publishRequest(writable, true)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(writable, "planted"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("a write through the repaired volume: %v, want EROFS", err)
	}

	other := n.target(t, podUID, "other")
	elsewhere := t.TempDir()
	if err := os.Mkdir(other, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(elsewhere, other, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	_, err := client.NodePublishVolume(t.Context(), publishRequest(other, true))
	if want := "publish the Workload API's directory: " + other + " is a mount point already, of another directory than " + n.source; status.Code(err) != codes.Internal || status.Convert(err).Message() != want {
		t.Errorf("publish over another mount: %v, want Internal: %s", err, want)
	}
}

// countMounts counts the mounts at path in this process's mount table.
func countMounts(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

func TestNewChecksTheConfig(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	long := "/" + strings.Repeat("s", 107)
	for _, tc := range []struct {
		name string
		cfg  csidriver.Config
		want string
	}{
		{"nothing", csidriver.Config{}, `csidriver: invalid config: name "": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')` +
			"\nnodeID: required\nsourceDir: required\nkubeletDir: required\nendpoint: required\nregistrationSocket: required\nlog: required"},
		{"relative and long paths", csidriver.Config{Name: driverName, NodeID: "n", SourceDir: "run/kzero", KubeletDir: "/", Endpoint: long,
			RegistrationSocket: "/var/lib/kubelet/plugins_registry/../x.sock", Log: log},
			`csidriver: invalid config: sourceDir "run/kzero": want an absolute, clean path` + "\n" +
				`kubeletDir "/": want kubelet's root directory, such as /var/lib/kubelet` + "\n" +
				`endpoint "` + long + `": 108 bytes, over the 107 a unix socket's path may have` + "\n" +
				`registrationSocket "/var/lib/kubelet/plugins_registry/../x.sock": want an absolute, clean path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := csidriver.New(tc.cfg)
			if err == nil || err.Error() != tc.want {
				t.Errorf("New: %v\nwant %s", err, tc.want)
			}
		})
	}
}

//go:build linux

package csidriver

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv, set, makes TestPublishReachesTheNodeReadOnly the agent's half:
// it publishes source at target ("source:target") and returns.
const childEnv = "KZERO_CSIDRIVER_TEST_PUBLISH"

// TestPublishReachesTheNodeReadOnly: the agent publishes in a mount
// namespace of its own whose kubelet directory is shared with the node's
// (mountPropagation: Bidirectional); the mount the node sees, through
// propagation, is read-only, nosuid, nodev and noexec too. A bind mount
// made writable, then remounted read-only, would reach the node writable:
// a remount does not propagate.
func TestPublishReachesTheNodeReadOnly(t *testing.T) {
	if arg := os.Getenv(childEnv); arg != "" {
		source, target, _ := strings.Cut(arg, ":")
		if err := publish(source, target); err != nil {
			t.Fatal(err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("mounts need root (CAP_SYS_ADMIN): run the tests as root to test them")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is missing")
	}
	dir := t.TempDir()
	source, kubelet := filepath.Join(dir, "agent"), filepath.Join(dir, "kubelet")
	for _, d := range []string{source, kubelet} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(source, "agent.sock"), []byte("the agent's"), 0o644); err != nil {
		t.Fatal(err)
	}
	// kubelet's directory: a mount of its own, shared, as on a node.
	if err := unix.Mount("tmpfs", kubelet, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(kubelet, unix.MNT_DETACH) })
	if err := unix.Mount("", kubelet, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(kubelet, "mount")
	// The agent: a child in a mount namespace of its own, whose copy of
	// kubelet's directory stays a peer of the node's.
	cmd := exec.Command("unshare", "--mount", "--propagation", "unchanged", os.Args[0], "-test.run=^TestPublishReachesTheNodeReadOnly$") //nolint:gosec // the test binary itself
	cmd.Env = append(os.Environ(), childEnv+"="+source+":"+target)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the agent's publish: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	mounted, err := isMountPoint(target)
	if err != nil || !mounted {
		t.Fatalf("the node does not see the agent's mount at %s: %t, %v", target, mounted, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "agent.sock")); err != nil || string(b) != "the agent's" {
		t.Errorf("the agent's file through the node's view of the volume: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "planted"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("a write through the node's view of the volume: %v, want EROFS", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		t.Fatal(err)
	}
	if want := int64(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC); st.Flags&want != want {
		t.Errorf("the node's view of the volume has flags %#x, lacking some of ro, nosuid, nodev, noexec (%#x)", st.Flags, want)
	}
}

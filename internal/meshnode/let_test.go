package meshnode_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sys/unix"

	"kzero.dev/kzero/internal/cni"
	"kzero.dev/kzero/internal/kubeobj"
	"kzero.dev/kzero/internal/mesh"
	"kzero.dev/kzero/internal/redirect/netnstest"
)

// TestPodLetGoTwiceLeavesOthersAlone: a pod is let go by a DEL while a
// reconcile that saw it captured is deciding to let it go too (its
// namespace left enrollment). The reconcile must not let it go a second
// time: by then its network namespace's file is closed, and its number,
// which names the namespace to the redirect package (/proc/self/fd/<n>),
// may be another pod's namespace, whose rules it would remove.
func TestPodLetGoTwiceLeavesOthersAlone(t *testing.T) {
	a, b := netnstest.Pair(t)
	web1, web2 := newPod("shop", "web-1", "web", a.IP), newPod("shop", "web-2", "web", b.IP)
	e := newEnv(t, envConfig{
		pods: []*kubeobj.Pod{web1, web2}, policies: ordersIngress,
		mesh: map[netip.Addr]spiffeid.ID{},
	})
	e.enrolled.set("shop", mesh.Strict)
	socket := e.serveCNI(t)
	e.run(t)

	if got := add(t, socket, web1, a.Path); got != (cni.Reply{Enrolled: true}) {
		t.Fatalf("ADD of shop/web-1: %+v", got)
	}
	n := fdOf(t, a.Path)

	// A reconcile that sees shop/web-1 captured, held as it asks whether
	// shop is enrolled.
	g := e.enrolled.hold(t)
	e.reconcile()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("the reconcile did not ask")
	}
	// Meanwhile, the runtime tears shop/web-1's sandbox down, and starts
	// shop/web-2's.
	del := addRequest(web1)
	del.Delete = true
	if got := plugin(t, socket, cni.Encode(del), nil); got != (cni.Reply{}) {
		t.Fatalf("DEL of shop/web-1: %+v", got)
	}
	if got := add(t, socket, web2, b.Path); got != (cni.Reply{Enrolled: true}) {
		t.Fatalf("ADD of shop/web-2: %+v", got)
	}
	// shop/web-1's namespace's file number now names shop/web-2's
	// namespace, as when the agent opens it next.
	if isNamespace(n, b.Path) {
		t.Logf("descriptor %d: the node opened shop/web-2's namespace on it", n)
	} else {
		t.Logf("descriptor %d: shop/web-2's namespace put on it", n)
		f, err := os.Open(b.Path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			t.Skipf("descriptor %d was taken by something else", n)
		}
		if err := unix.Dup3(int(f.Fd()), n, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		t.Cleanup(func() { _ = unix.Close(n) })
	}
	g.open() // shop is not enrolled, says the reconcile's answer
	// The next reconcile lists the pods once the held one has ended.
	select {
	case <-e.pods.listed: // the held one's
	default:
	}
	e.reconcile()
	select {
	case <-e.pods.listed:
	case <-time.After(waitFor):
		t.Fatal("no reconcile after the held one")
	}

	if got, want := e.node.Pods(), []string{"shop/web-2"}; !slices.Equal(got, want) {
		t.Errorf("Pods() = %v, want %v", got, want)
	}
	if !installed(t, b.Path) {
		t.Error("letting shop/web-1 go a second time removed shop/web-2's capture rules: its traffic is no longer captured")
	}
}

// fdOf is the descriptor of this process that holds the namespace at
// path open: the node's file of a pod's namespace.
func fdOf(t *testing.T, path string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for _, d := range entries {
		var n int
		if _, err := fmt.Sscan(d.Name(), &n); err == nil && isNamespace(n, path) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("descriptors of %s: %v, want the node's one", path, found)
	}
	return found[0]
}

// isNamespace reports whether descriptor n holds the namespace at path.
func isNamespace(n int, path string) bool {
	var want, got unix.Stat_t
	if unix.Stat(path, &want) != nil || unix.Fstat(n, &got) != nil {
		return false
	}
	return got.Dev == want.Dev && got.Ino == want.Ino
}

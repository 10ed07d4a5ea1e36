package podattest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/kubeobj"
)

const node = "node-a"

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// podMap is the Pods of a node held in memory.
type podMap map[types.UID]*kubeobj.Pod

func (m podMap) PodByUID(uid types.UID) (*kubeobj.Pod, bool) {
	p, ok := m[uid]
	return p, ok
}

// podsFunc is Pods as a function, for tests whose pods change as Attest
// runs.
type podsFunc func(types.UID) (*kubeobj.Pod, bool)

func (f podsFunc) PodByUID(uid types.UID) (*kubeobj.Pod, bool) { return f(uid) }

// running returns pod shop/web-7d9f of podUID on node, Running, whose
// container app is containerID, changed by edits.
func running(edits ...func(*kubeobj.Pod)) *kubeobj.Pod {
	p := &kubeobj.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", Namespace: "shop", UID: podUID},
		Spec:       kubeobj.PodSpec{NodeName: node, ServiceAccountName: "web"},
		Status: kubeobj.PodStatus{
			Phase: kubeobj.PodRunning,
			ContainerStatuses: []kubeobj.ContainerStatus{
				{Name: "app", ContainerID: "containerd://" + containerID, State: kubeobj.ContainerState{Running: &kubeobj.ContainerStateRunning{}}},
			},
		},
	}
	for _, edit := range edits {
		edit(p)
	}
	return p
}

// attestor returns an Attestor over a fake /proc whose PID 7 has the
// cgroup file cgroup (none if ""), and over pods.
func attestor(t *testing.T, cgroup string, pods Pods, edit func(*Config)) (*Attestor, fakeProc) {
	t.Helper()
	fp := newFakeProc(t)
	if cgroup != "" {
		fp.add(t, 7, 100, "S", cgroup)
	}
	cfg := Config{
		NodeName: node, TrustDomain: td, Pods: pods, ProcRoot: fp.root,
		Enrolled: func(ns string) bool { return ns != "legacy" },
		Wait:     -1,
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, fp
}

var (
	cgroupfsPod = hybrid("/kubepods/besteffort/pod" + podUID + "/" + containerID)
	systemdPod  = lines("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSD + ".slice/crio-" + containerID + ".scope")
	sandbox     = hybrid("/kubepods/besteffort/pod" + podUID + "/" + otherID)
)

func TestAttest(t *testing.T) {
	want := Result{
		Namespace: "shop", Pod: "web-7d9f", PodUID: podUID,
		Container: "app", ContainerID: containerID, ServiceAccount: "web",
		ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web"),
	}
	tests := []struct {
		name    string
		cgroup  string // PID 7's cgroup file; "" for no PID 7
		pid     int32  // 0 means 7
		pods    podMap
		want    Result
		kind    error
		wantErr string
	}{
		{name: "a container of a running pod, containerd", cgroup: cgroupfsPod,
			pods: podMap{podUID: running()}, want: want},
		{name: "CRI-O, systemd driver", cgroup: systemdPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.ContainerStatuses[0].ContainerID = "cri-o://" + containerID })}, want: want},
		{name: "Docker", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.ContainerStatuses[0].ContainerID = "docker://" + containerID })}, want: want},
		{name: "a sidecar (init container that keeps running)", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) {
				p.Status.InitContainerStatuses = p.Status.ContainerStatuses
				p.Status.InitContainerStatuses[0].Name = "proxy"
				p.Status.ContainerStatuses = []kubeobj.ContainerStatus{{Name: "app", ContainerID: "containerd://" + otherID}}
			})},
			want: func() Result { r := want; r.Container = "proxy"; return r }()},

		{name: "a process of the host", cgroup: hybrid("/user.slice/user-0.slice/session-1.scope"), pods: podMap{podUID: running()},
			kind: ErrNotInPod, wantErr: "podattest: PID 7 refused: not in a pod: cgroup /user.slice/user-0.slice/session-1.scope"},
		{name: "a cgroup below a container's", cgroup: lines("0::/kubepods/besteffort/pod" + podUID + "/" + containerID + "/x"), pods: podMap{podUID: running()},
			kind: ErrInvalidCgroup, wantErr: "podattest: PID 7 refused: invalid cgroup file: line 1: cgroup /kubepods/besteffort/pod" + podUID + "/" + containerID + "/x is below container " + containerID + "'s own: cgroups made inside a container are not attested"},
		{name: "PID 0", pid: -1, cgroup: cgroupfsPod, pods: podMap{podUID: running()},
			kind: ErrNoProcess, wantErr: "podattest: PID 0 refused: the caller is not visible in the agent's PID namespace: run the agent with hostPID: true"},
		{name: "a process that has exited", pods: podMap{podUID: running()},
			kind: ErrNoProcess, wantErr: "podattest: PID 7 refused: no such process: PID 7 has exited"},

		{name: "a pod the API server does not list here", cgroup: cgroupfsPod, pods: podMap{},
			kind: ErrUnknownPod, wantErr: "podattest: PID 7 refused: its cgroup names pod UID " + podUID + ", which the API server does not list on node node-a"},
		{name: "a pod of another node", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Spec.NodeName = "node-b" })},
			kind: ErrUnknownPod, wantErr: `podattest: PID 7 refused: pod shop/web-7d9f (UID ` + podUID + `) is bound to node "node-b", not node-a`},
		{name: "a static pod", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Annotations = map[string]string{kubeobj.MirrorPodAnnotationKey: "6c0ba1a4"} })},
			kind: ErrMirrorPod, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f is the mirror of a static pod: static pods get no identity; run it as a normal pod"},
		{name: "a namespace not enrolled", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Namespace = "legacy" })},
			kind: ErrNotEnrolled, wantErr: "podattest: PID 7 refused: pod legacy/web-7d9f is in namespace legacy, which is not enrolled in kzero"},
		{name: "a terminating pod", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) {
				p.DeletionTimestamp = &metav1.Time{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			})},
			kind: ErrPodTerminating, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f is terminating (deleted at 2026-03-01T12:00:00Z)"},
		{name: "a pod that has finished", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.Phase = kubeobj.PodSucceeded })},
			kind: ErrPodNotRunning, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f has finished (Succeeded)"},
		{name: "a pod not running yet", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.Phase = kubeobj.PodPending })},
			kind: ErrPodNotRunning, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f is Pending, not Running"},
		{name: "a pod in no phase", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.Phase = "" })},
			kind: ErrPodNotRunning, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f is in no phase yet, not Running"},
		{name: "the pod's sandbox (pause)", cgroup: sandbox, pods: podMap{podUID: running()},
			kind: ErrUnknownContainer, wantErr: "podattest: PID 7 refused: container " + otherID + " is none of the containers of pod shop/web-7d9f: the pod's sandbox (pause), or a container whose status is not reported yet"},
		{name: "an ephemeral container", cgroup: sandbox,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) {
				p.Status.EphemeralContainerStatuses = []kubeobj.ContainerStatus{{Name: "debugger", ContainerID: "containerd://" + otherID,
					State: kubeobj.ContainerState{Running: &kubeobj.ContainerStateRunning{}}}}
			})},
			kind: ErrUnknownContainer, wantErr: `podattest: PID 7 refused: container ` + otherID + ` is ephemeral container "debugger" of pod shop/web-7d9f: debugging containers get no identity`},
		{name: "a container not running", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) {
				p.Status.ContainerStatuses[0].State = kubeobj.ContainerState{} // waiting: ContainerCreating
			})},
			kind: ErrPodNotRunning, wantErr: `podattest: PID 7 refused: container "app" (` + containerID + `) of pod shop/web-7d9f is not running in the API server's view`},
		{name: "a runtime whose IDs are not read", cgroup: cgroupfsPod,
			pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Status.ContainerStatuses[0].ContainerID = "other://" + containerID })},
			kind: ErrUnknownContainer, wantErr: "podattest: PID 7 refused: container " + containerID + " is none of the containers of pod shop/web-7d9f: the pod's sandbox (pause), or a container whose status is not reported yet"},
		{name: "no service account", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Spec.ServiceAccountName = "" })},
			kind: ErrInvalidID, wantErr: "podattest: PID 7 refused: pod shop/web-7d9f names no service account"},
		{name: "a service account that makes no SPIFFE ID", cgroup: cgroupfsPod, pods: podMap{podUID: running(func(p *kubeobj.Pod) { p.Spec.ServiceAccountName = "web:1" })},
			kind: ErrInvalidID, wantErr: `podattest: PID 7 refused: namespace "shop" and service account "web:1" of pod web-7d9f make no valid SPIFFE ID: path segment characters are limited to letters, numbers, dots, dashes, and underscores`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := attestor(t, tt.cgroup, tt.pods, nil)
			pid := tt.pid
			if pid == 0 {
				pid = 7
			} else if pid < 0 {
				pid = 0
			}
			got, err := a.Attest(context.Background(), pid)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Attest: %v", err)
				}
				if got != tt.want {
					t.Errorf("Attest =\n %+v\nwant\n %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Attest = %+v, want error %s", got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n got %s\nwant %s", err, tt.wantErr)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error is not %v", tt.kind)
			}
			var refusal *RefusalError
			if !errors.As(err, &refusal) {
				t.Fatalf("error %T is not a *RefusalError", err)
			}
			if refusal.PID != pid {
				t.Errorf("refusal of PID %d, want %d", refusal.PID, pid)
			}
			public := refusal.PublicMessage()
			if public != publicMessages[tt.kind] {
				t.Errorf("public message %q, want the one of %v", public, tt.kind)
			}
			for _, secret := range []string{"web-7d9f", "shop", "legacy", podUID, containerID, otherID, node, "debugger"} {
				if strings.Contains(public, secret) {
					t.Errorf("public message %q names %q", public, secret)
				}
			}
		})
	}
}

// Every kind of refusal has a public message of its own.
func TestPublicMessages(t *testing.T) {
	kinds := []error{ErrNotInPod, ErrInvalidCgroup, ErrNoProcess, ErrUnknownPod, ErrMirrorPod, ErrNotEnrolled,
		ErrPodTerminating, ErrPodNotRunning, ErrUnknownContainer, ErrInvalidID}
	seen := map[string]error{}
	for _, kind := range kinds {
		m := (&RefusalError{Kind: kind}).PublicMessage()
		if other, ok := seen[m]; ok {
			t.Errorf("%v and %v have the same public message %q", kind, other, m)
		}
		seen[m] = kind
	}
	if got := (&RefusalError{Kind: errors.New("other")}).PublicMessage(); got != "the caller could not be attested" {
		t.Errorf("public message of an unknown kind = %q", got)
	}
}

// ticks is an After that fires at once and counts its calls.
type ticks struct {
	mu sync.Mutex
	n  int
	d  []time.Duration
}

func (c *ticks) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.d = append(c.d, d)
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (c *ticks) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// A container that asks for its identity before kubelet has reported it
// running gets it once the API server's view catches up.
func TestAttestWaitsForTheAPIServer(t *testing.T) {
	var mu sync.Mutex
	lookups := 0
	pods := podsFunc(func(types.UID) (*kubeobj.Pod, bool) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		switch lookups {
		case 1:
			return running(func(p *kubeobj.Pod) { p.Status.Phase = kubeobj.PodPending; p.Status.ContainerStatuses = nil }), true
		case 2:
			return running(func(p *kubeobj.Pod) {
				p.Status.ContainerStatuses[0].State = kubeobj.ContainerState{} // waiting
			}), true
		default:
			return running(), true
		}
	})
	var clock ticks
	a, _ := attestor(t, cgroupfsPod, pods, func(c *Config) { c.Wait = 0; c.After = clock.after })
	got, err := a.Attest(context.Background(), 7)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if got.Container != "app" || lookups != 3 || clock.count() != 2 {
		t.Errorf("Attest = %+v after %d lookups and %d waits, want app after 3 and 2", got, lookups, clock.count())
	}
	for _, d := range clock.d {
		if d != pollInterval {
			t.Errorf("waited %s, want %s", d, pollInterval)
		}
	}
}

func TestAttestWaitsNoLongerThanWait(t *testing.T) {
	var clock ticks
	a, _ := attestor(t, sandbox, podMap{podUID: running()}, func(c *Config) { c.Wait = 300 * time.Millisecond; c.After = clock.after })
	_, err := a.Attest(context.Background(), 7)
	want := "podattest: PID 7 refused: container " + otherID + " is none of the containers of pod shop/web-7d9f: the pod's sandbox (pause), or a container whose status is not reported yet (still so after waiting 300ms)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrUnknownContainer) {
		t.Fatalf("Attest error\n got %v\nwant %s", err, want)
	}
	if clock.count() != 3 {
		t.Errorf("waited %d times, want 3", clock.count())
	}
}

// A refusal that waiting cannot change is made at once.
func TestAttestDoesNotWaitForAFinalRefusal(t *testing.T) {
	var clock ticks
	a, _ := attestor(t, cgroupfsPod, podMap{podUID: running(func(p *kubeobj.Pod) { p.Namespace = "legacy" })},
		func(c *Config) { c.Wait = time.Hour; c.After = clock.after })
	if _, err := a.Attest(context.Background(), 7); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Attest error = %v, want ErrNotEnrolled", err)
	}
	if clock.count() != 0 {
		t.Errorf("waited %d times for a final refusal", clock.count())
	}
}

func TestAttestWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	never := func(time.Duration) <-chan time.Time { cancel(); return nil }
	a, _ := attestor(t, cgroupfsPod, podMap{}, func(c *Config) { c.Wait = time.Hour; c.After = never })
	_, err := a.Attest(ctx, 7)
	if !errors.Is(err, ErrUnknownPod) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Attest error = %v, want ErrUnknownPod and context.Canceled", err)
	}
}

// A process that exits while its pod is looked up, and whose PID is given
// to another process, is refused: the identity would go to the other.
func TestAttestRefusesAPIDReusedDuringTheCheck(t *testing.T) {
	var fp fakeProc
	pods := podsFunc(func(types.UID) (*kubeobj.Pod, bool) {
		fp.setStat(t, 7, 250, "S")
		return running(), true
	})
	var a *Attestor
	a, fp = attestor(t, cgroupfsPod, pods, nil)
	_, err := a.Attest(context.Background(), 7)
	want := "podattest: PID 7 refused: no such process: PID 7 was reused: the process that started at tick 100 exited and another started at tick 250"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoProcess) {
		t.Fatalf("Attest error\n got %v\nwant %s", err, want)
	}
}

func TestAttestRefusesAProcessThatExitsDuringTheCheck(t *testing.T) {
	var fp fakeProc
	pods := podsFunc(func(types.UID) (*kubeobj.Pod, bool) {
		fp.remove(t, 7)
		return running(), true
	})
	var a *Attestor
	a, fp = attestor(t, cgroupfsPod, pods, nil)
	_, err := a.Attest(context.Background(), 7)
	if want := "podattest: PID 7 refused: no such process: PID 7 has exited"; err == nil || err.Error() != want {
		t.Fatalf("Attest error\n got %v\nwant %s", err, want)
	}
}

// On the real /proc, this test's process is in no pod or (run in a pod)
// in one this empty view does not know.
func TestAttestRealProc(t *testing.T) {
	a, err := New(Config{NodeName: node, TrustDomain: td, Pods: podMap{}, Wait: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Attest(context.Background(), int32(os.Getpid()))
	if !errors.Is(err, ErrNotInPod) && !errors.Is(err, ErrUnknownPod) {
		t.Fatalf("Attest of the test process = %v, want ErrNotInPod or ErrUnknownPod", err)
	}
	t.Log(err)
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "empty", cfg: Config{},
			wantErr: "podattest: invalid config: nodeName: required\ntrustDomain: required\npods: required"},
		{name: "no pods", cfg: Config{NodeName: node, TrustDomain: td},
			wantErr: "podattest: invalid config: pods: required"},
		{name: "complete", cfg: Config{NodeName: node, TrustDomain: td, Pods: podMap{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("New error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.cfg.ProcRoot != DefaultProcRoot || a.cfg.Wait != DefaultWait || a.cfg.Enrolled == nil || a.cfg.After == nil || !a.cfg.Enrolled("any") {
				t.Errorf("defaults not set: %+v", a.cfg)
			}
		})
	}
}

func BenchmarkAttest(b *testing.B) {
	fp := newFakeProc(b)
	fp.add(b, 7, 100, "S", cgroupfsPod)
	a, err := New(Config{NodeName: node, TrustDomain: td, Pods: podMap{podUID: running()}, ProcRoot: fp.root})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Attest(context.Background(), 7); err != nil {
			b.Fatal(err)
		}
	}
}

package podattest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/internal/kubeobj"
)

// Pods finds a pod among those the API server says are bound to this
// node. NodePods is the agent's; tests use a map. It is called from many
// goroutines at once.
type Pods interface {
	// PodByUID returns the pod of that UID, false if there is none. The
	// pod is shared: the caller must not modify it.
	PodByUID(uid types.UID) (*kubeobj.Pod, bool)
}

// DefaultWait is how long Attest waits, by default, for the API server's
// view of a pod to show the caller's container running: a container that
// asks for its identity as soon as it starts may be running before
// kubelet has reported it, and when 100 pods start at once kubelet
// reports them seconds late (seen on the e2e cluster: 2 s was not enough).
// SPIRE's Kubernetes workload attestor waits about as long by default.
const DefaultWait = 30 * time.Second

// pollInterval is how often Attest looks at the pod again while it waits.
const pollInterval = 100 * time.Millisecond

// Config configures an Attestor.
type Config struct {
	// NodeName is the node the agent runs on. Required.
	NodeName string
	// TrustDomain is the trust domain of the SPIFFE IDs. Required.
	TrustDomain spiffeid.TrustDomain
	// Pods finds the pods bound to NodeName. Required.
	Pods Pods
	// ProcRoot is where procfs is mounted; "" means DefaultProcRoot. The
	// agent must see the host's processes (hostPID) for it to hold the
	// callers' PIDs.
	ProcRoot string
	// Enrolled reports whether a namespace is enrolled in kzero; nil means
	// every namespace is.
	Enrolled func(namespace string) bool
	// Wait bounds how long Attest waits for the API server's view of the
	// caller's pod to show it running (a pod or container status not yet
	// reported); zero means DefaultWait, a negative duration no wait.
	// Refusals that waiting cannot change are made at once.
	Wait time.Duration
	// After returns a channel that receives after d, like time.After;
	// nil means time.After. Tests set it to wait for nothing.
	After func(d time.Duration) <-chan time.Time
}

// Result is who a caller is: where it runs and the SPIFFE ID it may have.
type Result struct {
	Namespace string
	Pod       string
	PodUID    types.UID
	// Container is the name of the caller's container in the pod spec
	// (one of spec.containers or spec.initContainers).
	Container string
	// ContainerID is the runtime's ID of the container, without the
	// "<runtime>://" prefix.
	ContainerID    string
	ServiceAccount string
	// ID is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
	ID spiffeid.ID
}

// Attestor identifies the callers of the Workload API. It holds no state
// that changes: Attest may be called from many goroutines at once.
type Attestor struct {
	cfg  Config
	proc procFS
}

// New checks cfg and returns an Attestor.
func New(cfg Config) (*Attestor, error) {
	var errs []error
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("nodeName: required"))
	}
	if cfg.TrustDomain.IsZero() {
		errs = append(errs, errors.New("trustDomain: required"))
	}
	if cfg.Pods == nil {
		errs = append(errs, errors.New("pods: required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("podattest: invalid config: %w", errors.Join(errs...))
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if cfg.Enrolled == nil {
		cfg.Enrolled = func(string) bool { return true }
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	return &Attestor{cfg: cfg, proc: procFS{root: cfg.ProcRoot}}, nil
}

// Attest identifies the process pid, the caller's PID as the kernel gave
// it for the connection (SO_PEERCRED), and returns the SPIFFE ID it may
// have. See the package documentation for the checks.
//
// A refusal is a *RefusalError (see its Err* kinds); show the caller its
// PublicMessage, never its Error. When the refusal is one the API server's
// view may still lift (ErrUnknownPod, ErrPodNotRunning,
// ErrUnknownContainer), Attest looks again every 100 ms for up to
// Config.Wait, or until ctx ends, whose error is then the refusal's Cause.
// Any other error is the agent's own failure to read /proc (for example a
// permission), not the caller's fault.
func (a *Attestor) Attest(ctx context.Context, pid int32) (Result, error) {
	if pid <= 0 {
		return Result{}, refuse(ErrNoProcess, pid, "the caller is not visible in the agent's PID namespace: run the agent with hostPID: true")
	}
	p, err := a.proc.read(pid)
	if err != nil {
		return Result{}, a.procError(pid, err)
	}
	ref, err := ParseCgroup(p.cgroup)
	switch {
	case errors.Is(err, ErrNotInPod):
		return Result{}, refuseFor(ErrNotInPod, pid, err)
	case err != nil:
		return Result{}, refuseFor(ErrInvalidCgroup, pid, err)
	}
	var waited time.Duration
	for {
		res, refusal := a.check(pid, ref)
		if refusal == nil {
			if err := a.proc.same(pid, p.startTime); err != nil {
				return Result{}, a.procError(pid, err)
			}
			return res, nil
		}
		if !refusal.transient || waited >= a.cfg.Wait {
			if waited > 0 {
				refusal.Detail += fmt.Sprintf(" (still so after waiting %s)", waited)
			}
			return Result{}, refusal
		}
		select {
		case <-ctx.Done():
			refusal.Cause = ctx.Err()
			return Result{}, refusal
		case <-a.cfg.After(pollInterval):
			waited += pollInterval
		}
	}
}

// PodOf returns the UID of the pod whose cgroup the process pid is in,
// from its cgroup file alone, without the API server's view: what the
// Workload API's limits count a caller's connections by, so that a pod
// cannot multiply them by forking. Its errors are those of Attest's first
// step.
func (a *Attestor) PodOf(pid int32) (types.UID, error) {
	if pid <= 0 {
		return "", refuse(ErrNoProcess, pid, "the caller is not visible in the agent's PID namespace: run the agent with hostPID: true")
	}
	p, err := a.proc.read(pid)
	if err != nil {
		return "", a.procError(pid, err)
	}
	ref, err := ParseCgroup(p.cgroup)
	if err != nil {
		return "", err
	}
	return ref.PodUID, nil
}

func (a *Attestor) procError(pid int32, err error) error {
	if errors.Is(err, ErrNoProcess) {
		return refuseFor(ErrNoProcess, pid, err)
	}
	return err
}

// check decides on the caller's pod as the API server sees it now.
func (a *Attestor) check(pid int32, ref ContainerRef) (Result, *RefusalError) {
	pod, ok := a.cfg.Pods.PodByUID(ref.PodUID)
	if !ok || pod.UID != ref.PodUID {
		r := refuse(ErrUnknownPod, pid, "its cgroup names pod UID %s, which the API server does not list on node %s", ref.PodUID, a.cfg.NodeName)
		r.transient = true
		return Result{}, r
	}
	ns, name := pod.Namespace, pod.Name
	switch {
	case pod.Spec.NodeName != a.cfg.NodeName:
		return Result{}, refuse(ErrUnknownPod, pid, "pod %s/%s (UID %s) is bound to node %q, not %s", ns, name, pod.UID, pod.Spec.NodeName, a.cfg.NodeName)
	case pod.Annotations[kubeobj.MirrorPodAnnotationKey] != "":
		return Result{}, refuse(ErrMirrorPod, pid, "pod %s/%s is the mirror of a static pod: static pods get no identity; run it as a normal pod", ns, name)
	case !a.cfg.Enrolled(ns):
		return Result{}, refuse(ErrNotEnrolled, pid, "pod %s/%s is in namespace %s, which is not enrolled in kzero", ns, name, ns)
	case pod.DeletionTimestamp != nil:
		return Result{}, refuse(ErrPodTerminating, pid, "pod %s/%s is terminating (deleted at %s)", ns, name, pod.DeletionTimestamp.UTC().Format(time.RFC3339))
	case pod.Status.Phase == kubeobj.PodSucceeded || pod.Status.Phase == kubeobj.PodFailed:
		return Result{}, refuse(ErrPodNotRunning, pid, "pod %s/%s has finished (%s)", ns, name, pod.Status.Phase)
	case pod.Status.Phase != kubeobj.PodRunning:
		r := refuse(ErrPodNotRunning, pid, "pod %s/%s is %s, not Running", ns, name, phaseName(pod.Status.Phase))
		r.transient = true
		return Result{}, r
	}
	status, refusal := findContainer(pid, pod, ref.ContainerID)
	if refusal != nil {
		return Result{}, refusal
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		return Result{}, refuse(ErrInvalidID, pid, "pod %s/%s names no service account", ns, name)
	}
	id, err := spiffeid.FromSegments(a.cfg.TrustDomain, "ns", ns, "sa", sa)
	if err != nil {
		r := refuse(ErrInvalidID, pid, "namespace %q and service account %q of pod %s make no valid SPIFFE ID: %v", ns, sa, name, err)
		r.Cause = err
		return Result{}, r
	}
	return Result{
		Namespace: ns, Pod: name, PodUID: pod.UID,
		Container: status.Name, ContainerID: ref.ContainerID,
		ServiceAccount: sa, ID: id,
	}, nil
}

// findContainer returns the status of the pod's running container (or
// init container, as a sidecar is) whose ID is id.
func findContainer(pid int32, pod *kubeobj.Pod, id string) (*kubeobj.ContainerStatus, *RefusalError) {
	ns, name := pod.Namespace, pod.Name
	for _, statuses := range [][]kubeobj.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range statuses {
			s := &statuses[i]
			if runtimeID(s.ContainerID) != id {
				continue
			}
			if s.State.Running == nil {
				r := refuse(ErrPodNotRunning, pid, "container %q (%s) of pod %s/%s is not running in the API server's view", s.Name, id, ns, name)
				r.transient = true
				return nil, r
			}
			return s, nil
		}
	}
	for _, s := range pod.Status.EphemeralContainerStatuses {
		if runtimeID(s.ContainerID) == id {
			return nil, refuse(ErrUnknownContainer, pid, "container %s is ephemeral container %q of pod %s/%s: debugging containers get no identity", id, s.Name, ns, name)
		}
	}
	r := refuse(ErrUnknownContainer, pid, "container %s is none of the containers of pod %s/%s: the pod's sandbox (pause), or a container whose status is not reported yet", id, ns, name)
	r.transient = true
	return nil, r
}

// runtimes are the prefixes of container statuses' containerIDs
// ("<runtime>://<id>") of the runtimes whose cgroups ParseCgroup reads.
var runtimes = []string{"containerd://", "cri-o://", "docker://"}

// runtimeID returns the ID in a container status's containerID, "" for
// another runtime or none.
func runtimeID(containerID string) string {
	for _, prefix := range runtimes {
		if id, ok := strings.CutPrefix(containerID, prefix); ok {
			return id
		}
	}
	return ""
}

func phaseName(p kubeobj.PodPhase) string {
	if p == "" {
		return "in no phase yet"
	}
	return string(p)
}

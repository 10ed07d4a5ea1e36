package podattest

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of refusal Attest makes besides ErrNotInPod and
// ErrInvalidCgroup. A *RefusalError unwraps to one of them.
var (
	// ErrNoProcess: the caller's process cannot be read: it has exited,
	// its PID was given to another process while it was read, or it is
	// not visible in the agent's PID namespace (PID 0).
	ErrNoProcess = errors.New("podattest: no such process")
	// ErrUnknownPod: the process's cgroup names a pod the API server does
	// not list on this node.
	ErrUnknownPod = errors.New("podattest: pod not on this node")
	// ErrMirrorPod: the pod is a static pod (the API server holds its
	// mirror): kubelet, not the API server, decides what it runs.
	ErrMirrorPod = errors.New("podattest: static pod")
	// ErrNotEnrolled: the pod's namespace is not enrolled in kzero.
	ErrNotEnrolled = errors.New("podattest: namespace not enrolled")
	// ErrPodTerminating: the pod is being deleted.
	ErrPodTerminating = errors.New("podattest: pod terminating")
	// ErrPodNotRunning: the pod is not in phase Running, or the
	// container is not running, in the API server's view.
	ErrPodNotRunning = errors.New("podattest: pod not running")
	// ErrUnknownContainer: the process's container is none of the pod's
	// containers (the pod's sandbox, whose pause process has a container
	// cgroup of its own) or an ephemeral (debugging) container.
	ErrUnknownContainer = errors.New("podattest: not one of the pod's containers")
	// ErrInvalidID: the pod's namespace and service account make no valid
	// SPIFFE ID.
	ErrInvalidID = errors.New("podattest: no valid SPIFFE ID")
)

// publicMessages are what a caller is told of each kind of refusal: what
// happened to it, naming no pod, namespace or container, so that asking
// teaches a process nothing about the node.
var publicMessages = map[error]string{
	ErrNotInPod:         "the caller is not in a Kubernetes pod's container: only pods get an identity here",
	ErrInvalidCgroup:    "the caller's cgroup is not one kzero recognises as a pod's container",
	ErrNoProcess:        "the calling process could not be read: it has exited, or the agent cannot see it",
	ErrUnknownPod:       "the caller's pod is not known to run on this node",
	ErrMirrorPod:        "static pods get no identity: run the workload as a normal pod",
	ErrNotEnrolled:      "the caller's namespace is not enrolled in kzero",
	ErrPodTerminating:   "the caller's pod is terminating",
	ErrPodNotRunning:    "the caller's pod or container is not running yet: retry",
	ErrUnknownContainer: "the caller's container is not one of its pod's containers: sandbox and ephemeral containers get no identity",
	ErrInvalidID:        "the caller's namespace and service account make no valid SPIFFE ID",
}

// RefusalError is Attest refusing a caller. Error is for an operator's
// log: the PID, what was found, why it was refused. PublicMessage is for
// the caller. Unwrap returns Kind (one of the Err* sentinels) and Cause.
type RefusalError struct {
	// Kind names the refusal for a machine: one of the Err* sentinels.
	Kind error
	// PID is the caller's PID.
	PID int32
	// Detail says what was found and why it was refused, for an
	// operator; it may name the caller's pod.
	Detail string
	// Cause is the error behind the refusal, if any: ParseCgroup's, a
	// read of /proc, or the context's when it ended a wait.
	Cause error

	// transient: the API server's view may still change to let the
	// caller in (a pod or container status not yet reported).
	transient bool
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("podattest: PID %d refused: %s", e.PID, e.Detail)
}

// PublicMessage returns what the caller may be told: the kind of refusal,
// naming nothing of the node.
func (e *RefusalError) PublicMessage() string {
	if m, ok := publicMessages[e.Kind]; ok {
		return m
	}
	return "the caller could not be attested"
}

// Unwrap returns Kind and Cause, so that errors.Is(err, ErrNotInPod) and
// errors.Is(err, context.Canceled) both work.
func (e *RefusalError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func refuse(kind error, pid int32, format string, args ...any) *RefusalError {
	return &RefusalError{Kind: kind, PID: pid, Detail: fmt.Sprintf(format, args...)}
}

// refuseFor turns an error wrapping one of the sentinels into a refusal
// whose detail is the error's message without the package prefix.
func refuseFor(kind error, pid int32, err error) *RefusalError {
	return &RefusalError{Kind: kind, PID: pid, Detail: strings.TrimPrefix(err.Error(), "podattest: "), Cause: err}
}

package workloadapi

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Attestor says who a caller is. In kzero agent it follows the caller's PID
// to its cgroup, its pod and the pod's service account; in `kzero up`, to
// its unix user.
type Attestor interface {
	// Attest returns the SPIFFE ID the caller may have, in the server's
	// trust domain. Any error refuses the caller: it gets PermissionDenied,
	// with the PublicMessage of an error in the chain that has one (a
	// *DeniedError, say), or a general message otherwise; the error
	// itself is logged, not sent. It is called at the start of every
	// request and before every message a stream pushes, concurrently.
	Attest(ctx context.Context, c Caller) (spiffeid.ID, error)
}

// AttestorFunc adapts a function to Attestor.
type AttestorFunc func(ctx context.Context, c Caller) (spiffeid.ID, error)

// Attest calls f.
func (f AttestorFunc) Attest(ctx context.Context, c Caller) (spiffeid.ID, error) { return f(ctx, c) }

// publicError is an error with a message for the caller: what happened to
// it and what to do, naming nothing but the caller itself, never another
// workload. An Attestor's error may wrap one.
type publicError interface {
	error
	PublicMessage() string
}

// DeniedError is a refusal an Attestor wants the caller to read: Reason
// says why and what to do, and names nothing but the caller's own pod (or
// user), never another workload's. Cause is logged with it, never sent.
type DeniedError struct {
	Reason string
	Cause  error
}

// PublicMessage returns Reason: what the caller is told.
func (e *DeniedError) PublicMessage() string { return e.Reason }

func (e *DeniedError) Error() string {
	if e.Cause == nil {
		return "workloadapi: denied: " + e.Reason
	}
	return "workloadapi: denied: " + e.Reason + ": " + e.Cause.Error()
}

func (e *DeniedError) Unwrap() error { return e.Cause }

// Messages of the statuses the server answers with. They are sent to
// workloads, so they name no other workload and no internal detail.
const (
	msgNoHeader = "security header missing from request"
	msgDenied   = "no SPIFFE identity for the calling process: the agent gives one only to the workloads it can attest (in Kubernetes, the containers of pods in namespaces enrolled in kzero on this node); ask the cluster's operators whether this one should have one"
	msgNoPeer   = "the agent could not read the calling process's credentials from its socket connection: connect over the agent's unix socket"
)

// attest returns the SPIFFE ID of the caller of a request, or the status
// error to answer with.
func (a *api) attest(ctx context.Context) (spiffeid.ID, error) {
	c, ok := callerFrom(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, msgNoPeer)
	}
	id, err := a.cfg.Attestor.Attest(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return spiffeid.ID{}, status.FromContextError(ctx.Err()).Err()
		}
		a.cfg.Log.Info("workload attestation refused a caller", "pid", c.PID, "uid", c.UID, "gid", c.GID, "error", err)
		if p, ok := errors.AsType[publicError](err); ok && p.PublicMessage() != "" {
			return spiffeid.ID{}, status.Error(codes.PermissionDenied, p.PublicMessage())
		}
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, msgDenied)
	}
	if !id.MemberOf(a.cfg.TrustDomain) || id.Path() == "" {
		a.cfg.Log.Error("the attestor gave an ID the agent cannot serve: it must be in the agent's trust domain and have a path",
			"pid", c.PID, "id", id.String(), "trustDomain", a.cfg.TrustDomain.Name())
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, msgDenied)
	}
	return id, nil
}

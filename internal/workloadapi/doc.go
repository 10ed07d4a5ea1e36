// Package workloadapi is the SPIFFE Workload API that kzero agent serves on
// a unix socket to the workloads of its node, per the SPIFFE Workload API
// and Workload Endpoint standards, with go-spiffe's generated server
// interface.
//
// A Server identifies every caller by the kernel's credentials of its
// socket connection (SO_PEERCRED, captured once per connection: a Caller),
// asks an Attestor which SPIFFE ID that caller has, and answers with that
// ID's SVIDs only; a caller the Attestor refuses gets PermissionDenied, a
// request without the `workload.spiffe.io: true` header InvalidArgument.
//
// X.509-SVIDs are cached per SPIFFE ID (in kzero, per service account):
// the first caller of an ID makes the agent generate an ECDSA P-256 key and
// ask the Signer (the authority) to certify it, and every caller of that ID
// after it, or at the same time, gets the same SVID: a burst of callers
// costs one signature. The cache renews each SVID from half its life on
// and pushes it, with the bundles, to every FetchX509SVID stream of its ID;
// entries nobody has used for Config.Idle are dropped. JWT-SVIDs are
// cached too, per SPIFFE ID and audience set, until half their life, in a
// bounded cache. Trust bundles come
// from Bundles, which the agent keeps up to date; every change is pushed
// to the streams that carry bundles.
//
// The package knows nothing of Kubernetes: pods, cgroups and service
// accounts are the Attestor's business, the authority's protocol the
// Signer's.
package workloadapi

// Package ca is the trust domain's certificate authority: a root CA and an
// issuing intermediate that sign X.509-SVIDs, a key that signs JWT-SVIDs, and
// the SPIFFE trust bundle that verifies them, all rotated on a schedule with
// overlap so that no workload ever holds an SVID its peers cannot verify.
//
// The package does no I/O of its own. Its state, private keys included,
// reaches it through a Store; time through Config.Now; randomness for serial
// numbers and key IDs through Config.Rand. Rotation is decided by a pure
// function over the current state and the time (see plan), and carried out by
// CA.Rotate, which persists the new state before any new key signs.
//
// Everything here follows the SPIFFE standards: SPIFFE-ID, X509-SVID,
// JWT-SVID and the SPIFFE Trust Domain and Bundle. Requests that break them
// are refused with a *RequestError that wraps one of the Err* sentinels.
package ca

// Package audit is kzero's audit trail: one versioned event schema
// (kzero.dev/audit/v1) for certificate issuance, admission verdicts and
// access decisions, written as JSON lines to a stream (stdout, for any log
// shipper) and optionally to a file, each hash-chained so that Verify
// checks its integrity.
//
// A Recorder stamps, validates and writes events, in order, to its Chains
// (or, for a component with no SVID, plain to Out); it is safe for
// concurrent use and returns every write error. A Chain links each record
// of the stream or file to the one before it by SHA-256 and, every so many
// records, at an interval and on Close, appends a checkpoint signed with
// the component's X.509-SVID key, carrying the SVID's certificate chain.
// Verify reads a chained file, or a stream as a log pipeline collected it
// (other lines skipped), and names the first record that was changed,
// removed, inserted or reordered, a chain that no checkpoint signs, and a
// checkpoint signed by anyone but the expected signer; given a trust
// bundle it also checks that every checkpoint was signed by a kzero SVID.
//
// Audit events are not logs: they go through a Recorder, never through
// log/slog, and carry no key material and no bearer token. Metrics counts
// events and observes decision latency for Prometheus, on a registry the
// caller passes in. docs/audit.md describes the schema field by field and
// the chain's format byte by byte.
package audit

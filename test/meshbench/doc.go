// Package meshbench measures issue 15's mesh (internal/mesh) beside the
// same traffic sent directly and through a pair of nginx mTLS proxies, in
// one run on one machine: the latency a proxy adds at a steady 1,000
// requests a second, with keep-alive and with a new connection per
// request; the throughput of one bulk stream; and the CPU time and memory
// of each side's proxy. Everything runs in network namespaces the
// benchmark makes itself, and needs root; README.md says how to run it and
// what each figure means.
//
// The package holds only tests: benchmarks, which run with -bench, and a
// few quick tests of its own pieces.
package meshbench

// Package archtest holds tests of the repository's shape: every package has
// a doc comment, and dependencies run one way (the identity and policy
// packages import no network or Kubernetes client library). It has no code
// of its own.
package archtest

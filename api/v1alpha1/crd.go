package v1alpha1

import _ "embed" // for CRD

// CRD is the CustomResourceDefinition of AccessPolicy
// (accesspolicies.kzero.dev, apiextensions.k8s.io/v1) as YAML: the schema
// with which the API server validates policies, including the CEL rules
// that a plain schema cannot express, the status subresource, the short name
// ap and the printer columns. It is crd/kzero.dev_accesspolicies.yaml,
// embedded; `kzero install` renders it.
//
// The slice is shared: callers must not modify it; reading it from several
// goroutines is safe.
//
//go:embed crd/kzero.dev_accesspolicies.yaml
var CRD []byte

// Package v1alpha1 holds kzero's API types of group kzero.dev, version
// v1alpha1: AccessPolicy, the one policy that the node tunnel and the
// gateway both enforce. The CustomResourceDefinition that the API server
// validates them with is embedded as CRD.
//
// +groupName=kzero.dev
package v1alpha1

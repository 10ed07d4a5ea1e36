// Package kubeconfig finds how a kzero command reaches the API server.
package kubeconfig

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Load loads the kubeconfig file at path; with path empty, $KUBECONFIG
// (or ~/.kube/config), else the in-cluster configuration of a pod's
// service account.
func Load(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" {
		if in, inErr := rest.InClusterConfig(); inErr == nil {
			return in, nil
		}
	}
	return nil, fmt.Errorf("no Kubernetes configuration: give --kubeconfig, set KUBECONFIG, or run in a pod with a service account: %w", err)
}

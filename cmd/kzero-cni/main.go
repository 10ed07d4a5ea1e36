// Command kzero-cni is kzero's chained CNI plugin: the container runtime
// runs it after the pod network's plugins for every pod sandbox, and it
// has the node's kzero agent capture the pods of enrolled namespaces
// before their containers start (internal/cni). kzero agent installs it
// in the node's CNI bin directory and chains it in the node's network
// configuration; nobody runs it by hand.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"kzero.dev/kzero/internal/cni/plugin"
	"kzero.dev/kzero/internal/version"
)

func main() {
	skel.PluginMainFuncs(plugin.Plugin{}.Funcs(), plugin.Versions, "kzero-cni "+version.Get().Version+": kzero's chained plugin; it tells the node's kzero agent of each pod")
}

// Package plugin is kzero-cni's commands: ADD, DEL and CHECK of a chained
// CNI plugin (see package cni for what it does and why).
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"kzero.dev/kzero/internal/cni"
)

// PluginConfig is the plugin's entry in a network configuration list.
type PluginConfig struct {
	types.PluginConf
	// Socket is the agent's; empty means cni.Socket.
	Socket string `json:"socket,omitempty"`
	// EnrolledFile is the agent's list of enrolled namespaces; empty means
	// cni.EnrolledFile.
	EnrolledFile string `json:"enrolledFile,omitempty"`
	// KzeroNamespace is where kzero runs (its pods are never enrolled);
	// empty means DefaultKzeroNamespace.
	KzeroNamespace string `json:"kzeroNamespace,omitempty"`
}

// Plugin is the chained plugin's commands, for skel.PluginMainFuncs.
type Plugin struct {
	// Timeout bounds the agent's answer to an ADD; zero means a minute.
	Timeout time.Duration
	// Stdout receives ADD's result; nil means os.Stdout (skel's).
	Stdout io.Writer
}

// Funcs returns the plugin's commands.
func (p Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check}
}

// Versions are the CNI spec versions the plugin speaks: those with a
// prevResult for chained plugins.
var Versions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// DefaultKzeroNamespace is v1alpha1.Namespace, which the plugin does not
// import: the API types would make it megabytes larger (a test checks
// they agree).
const DefaultKzeroNamespace = "kzero-system"

// neverEnrolled is v1alpha1.NeverEnrolled, for the same reason.
func neverEnrolled(namespace, kzeroNamespace string) bool {
	return namespace == "kube-system" || namespace == kzeroNamespace
}

// podArgs are the Kubernetes arguments of CNI_ARGS.
type podArgs struct{ namespace, name, uid string }

// parseArgs reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from
// CNI_ARGS ("K=V;K=V").
func parseArgs(s string) podArgs {
	var a podArgs
	for kv := range strings.SplitSeq(s, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			a.namespace = v
		case "K8S_POD_NAME":
			a.name = v
		case "K8S_POD_UID":
			a.uid = v
		}
	}
	return a
}

// load parses the plugin's configuration, with its defaults.
func load(stdin []byte) (*PluginConfig, error) {
	c := &PluginConfig{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, fmt.Errorf("kzero-cni: the network configuration is not JSON: %w", err)
	}
	if c.Socket == "" {
		c.Socket = cni.Socket
	}
	if c.EnrolledFile == "" {
		c.EnrolledFile = cni.EnrolledFile
	}
	if c.KzeroNamespace == "" {
		c.KzeroNamespace = DefaultKzeroNamespace
	}
	return c, nil
}

// Add tells the agent of the pod and passes the previous result on; it
// fails when the pod is enrolled and the agent did not protect it.
func (p Plugin) Add(args *skel.CmdArgs) error {
	conf, err := load(args.StdinData)
	if err != nil {
		return err
	}
	if conf.RawPrevResult == nil {
		return errors.New("kzero-cni: no prevResult: kzero-cni is a chained plugin; put it after the pod network's plugin in the network's .conflist")
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return fmt.Errorf("kzero-cni: prevResult: %w", err)
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return fmt.Errorf("kzero-cni: prevResult: %w", err)
	}
	pod := parseArgs(args.Args)
	if pod.namespace != "" && pod.name != "" && !neverEnrolled(pod.namespace, conf.KzeroNamespace) {
		req := cni.Request{ContainerID: args.ContainerID, Netns: args.Netns, Namespace: pod.namespace, Name: pod.name, UID: pod.uid}
		for _, ip := range prev.IPs {
			if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
				req.IPs = append(req.IPs, a.Unmap())
			}
			if a, ok := netip.AddrFromSlice(ip.Gateway); ok {
				req.Gateways = append(req.Gateways, a.Unmap())
			}
		}
		if err := p.add(conf, &req); err != nil {
			return err
		}
	}
	return p.print(prev, conf.CNIVersion)
}

func (p Plugin) print(r *current.Result, cniVersion string) error {
	if p.Stdout == nil {
		return types.PrintResult(r, cniVersion)
	}
	v, err := r.GetAsVersion(cniVersion)
	if err != nil {
		return err
	}
	return v.PrintTo(p.Stdout)
}

// add asks the agent, or decides alone when it does not answer.
func (p Plugin) add(conf *PluginConfig, req *cni.Request) error {
	timeout := p.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	var reply cni.Reply
	err := call(conf.Socket, req, req.Netns, &reply, timeout)
	var down *agentDownError
	switch {
	case errors.As(err, &down):
		set, ok, rerr := cni.ReadEnrolled(conf.EnrolledFile)
		switch {
		case rerr != nil:
			return fmt.Errorf("kzero-cni: the kzero agent on this node does not answer (%w) and its list of enrolled namespaces cannot be read (%w): pod %s/%s waits until the agent is back", down.err, rerr, req.Namespace, req.Name)
		case !ok:
			return fmt.Errorf("kzero-cni: the kzero agent on this node does not answer (%w) and has not yet said which namespaces are enrolled: pod %s/%s waits until the agent is up (kubectl -n %s get pods -l app.kubernetes.io/component=agent)", down.err, req.Namespace, req.Name, conf.KzeroNamespace)
		case set[req.Namespace]:
			return fmt.Errorf("kzero-cni: namespace %s is enrolled and the kzero agent on this node does not answer (%w): pod %s waits until the agent is back, never running unprotected", req.Namespace, down.err, req.Name)
		}
		return nil
	case err != nil:
		return fmt.Errorf("kzero-cni: pod %s/%s: %w", req.Namespace, req.Name, err)
	case reply.Error != "":
		return fmt.Errorf("kzero-cni: the kzero agent could not protect pod %s/%s of enrolled namespace %s, so it does not start: %s", req.Namespace, req.Name, req.Namespace, reply.Error)
	}
	return nil
}

// Del tells the agent the sandbox is gone; it never fails, as DEL must
// succeed for the runtime to clean up (the agent also finds by itself
// the pods that are gone).
func (p Plugin) Del(args *skel.CmdArgs) error {
	conf, err := load(args.StdinData)
	if err != nil {
		return nil //nolint:nilerr // see above
	}
	pod := parseArgs(args.Args)
	req := cni.Request{ContainerID: args.ContainerID, Netns: args.Netns, Namespace: pod.namespace, Name: pod.name, UID: pod.uid}
	req.Delete = true
	_ = call(conf.Socket, &req, "", &cni.Reply{}, 10*time.Second) //nolint:errcheck // see above
	return nil
}

// Check has nothing to check that the agent does not watch itself.
func (p Plugin) Check(args *skel.CmdArgs) error {
	_, err := load(args.StdinData)
	return err
}

// agentDownError is a call that reached no agent.
type agentDownError struct{ err error }

func (e *agentDownError) Error() string { return "the kzero agent does not answer: " + e.err.Error() }

// call sends req, and the network namespace file netns when not empty, to
// the agent at socket and decodes its answer into reply.
func call(socket string, req *cni.Request, netns string, reply *cni.Reply, timeout time.Duration) error {
	// The namespace first: the agent is not called for a request that
	// cannot be made.
	var fds []int
	if netns != "" {
		f, err := os.Open(netns) //nolint:gosec // the runtime's sandbox namespace
		if err != nil {
			return fmt.Errorf("the pod's network namespace: %w", err)
		}
		defer f.Close() //nolint:errcheck // read only
		fds = append(fds, int(f.Fd()))
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return &agentDownError{err: err}
	}
	conn, _ := c.(*net.UnixConn)
	defer conn.Close() //nolint:errcheck // the answer is read
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if err := cni.WriteMessage(conn, cni.Encode(req), fds); err != nil {
		return fmt.Errorf("telling the kzero agent: %w", err)
	}
	body, _, err := cni.ReadMessage(conn)
	if err != nil {
		return fmt.Errorf("the kzero agent did not answer: %w", err)
	}
	if err := json.Unmarshal(body, reply); err != nil {
		return fmt.Errorf("the kzero agent's answer is not JSON: %w", err)
	}
	return nil
}

// Package cni is kzero's chained CNI plugin and the protocol between it
// and the node's agent.
//
// The container runtime runs the plugin, after the cluster's own network
// plugins, for every pod sandbox it makes or tears down. On ADD the plugin
// tells the agent of the pod (its network namespace, its name and UID, the
// addresses the plugins before it gave it) over a unix socket only root on
// the node can reach, and waits: the agent installs the pod's capture rules
// and opens its listeners in that namespace before it answers, so the
// pod's containers, which start only after ADD succeeds, never run without
// them. When the agent cannot protect a pod of an enrolled namespace, ADD
// fails and the runtime tries again later: the pod stays in
// ContainerCreating with an event that says why.
//
// When the agent does not answer at all, the plugin decides alone from the
// list of enrolled namespaces the agent last wrote (EnrolledFile): a pod of
// a namespace in it, or any pod when there is no list, is refused; others
// (and those of namespaces never enrolled, such as kzero's own, so that
// the agent itself can start) go on. The agent brings in, when it is back,
// a pod a stale list let through.
package cni

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Where the agent and the plugin meet, on the node.
const (
	// Dir is the agent's directory of the plugin's socket and of the
	// enrolled list: root's only (0700).
	Dir = "/run/kzero/cni"
	// Socket is where the agent listens for the plugin.
	Socket = Dir + "/agent.sock"
	// EnrolledFile lists the enrolled namespaces, one per line, as the
	// agent last saw them.
	EnrolledFile = Dir + "/enrolled"
	// PluginType is the plugin's type in a network configuration, and its
	// binary's name in the CNI bin directory.
	PluginType = "kzero-cni"
)

// MaxMessage bounds a message on Socket; a real one is a few hundred
// bytes.
const MaxMessage = 16 << 10

// Request is what the plugin tells the agent of a pod sandbox: one message
// on Socket, with, for an ADD, the sandbox's network namespace as a file
// descriptor (SCM_RIGHTS), so that the agent needs no view of the
// runtime's files; the agent answers with one Reply.
type Request struct {
	// Delete is true for a DEL, false for an ADD.
	Delete bool `json:"delete,omitempty"`
	// ContainerID is the runtime's ID of the sandbox.
	ContainerID string `json:"containerID"`
	// Netns is the sandbox's network namespace, a path on the node, for
	// the logs; the agent uses the descriptor.
	Netns string `json:"netns"`
	// Namespace, Name and UID are the pod's (from CNI_ARGS).
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// IPs are the pod's addresses, and Gateways the gateways of its
	// networks (where the node's connections, kubelet's probes among them,
	// come from), from the previous plugins' result.
	IPs      []netip.Addr `json:"ips,omitempty"`
	Gateways []netip.Addr `json:"gateways,omitempty"`
}

// Reply is the agent's answer to an ADD.
type Reply struct {
	// Enrolled says the pod's namespace is enrolled and the pod is now
	// captured; false, the pod is left alone.
	Enrolled bool `json:"enrolled"`
	// Error, when not empty, says why the agent could not protect an
	// enrolled pod: the plugin fails ADD with it.
	Error string `json:"error,omitempty"`
}

// Validate checks a request as the agent receives it: the plugin runs as
// root, but what it relays came from the runtime and the pod's spec.
func (r *Request) Validate() error {
	var errs []error
	if r.ContainerID == "" || len(r.ContainerID) > 256 || strings.ContainsAny(r.ContainerID, "/\x00") {
		errs = append(errs, fmt.Errorf("containerID %q: want the runtime's sandbox ID", r.ContainerID))
	}
	if len(r.Netns) > 4096 {
		errs = append(errs, errors.New("netns: longer than a path"))
	}
	if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", r.Namespace, strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Subdomain(r.Name); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("name %q: %s", r.Name, strings.Join(msgs, "; ")))
	}
	if r.UID == "" || len(r.UID) > 64 {
		errs = append(errs, fmt.Errorf("uid %q: want the pod's UID", r.UID))
	}
	if len(r.IPs) > 8 || len(r.Gateways) > 8 {
		errs = append(errs, errors.New("more than 8 addresses or gateways: a pod has one or two"))
	}
	for _, a := range append(slices.Clone(r.IPs), r.Gateways...) {
		if !a.IsValid() || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("address %q: want an IP address without a zone", a))
			break
		}
	}
	return errors.Join(errs...)
}

// WriteEnrolled writes the enrolled namespaces to path, whole or not at
// all.
func WriteEnrolled(path string, namespaces []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".enrolled-*")
	if err != nil {
		return fmt.Errorf("cni: enrolled list: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	w := bufio.NewWriter(tmp)
	for _, ns := range namespaces {
		fmt.Fprintln(w, ns)
	}
	if err := errors.Join(w.Flush(), tmp.Chmod(0o600), tmp.Close()); err != nil {
		return fmt.Errorf("cni: enrolled list: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cni: enrolled list: %w", err)
	}
	return nil
}

// maxEnrolled bounds the list ReadEnrolled reads.
const maxEnrolled = 100000

// ReadEnrolled reads the list WriteEnrolled wrote; ok is false when there
// is none.
func ReadEnrolled(path string) (set map[string]bool, ok bool, err error) {
	f, err := os.Open(path) //nolint:gosec // the agent's own file
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close() //nolint:errcheck // read only
	set = map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if len(set) == maxEnrolled {
			return nil, false, fmt.Errorf("%s lists more than %d namespaces", path, maxEnrolled)
		}
		if ns := strings.TrimSpace(s.Text()); ns != "" {
			set[ns] = true
		}
	}
	return set, true, s.Err()
}

// Encode is json.Marshal for the protocol's types, which cannot fail.
func Encode(v any) []byte {
	b, _ := json.Marshal(v) //nolint:errchkjson // plain structs
	return b
}

// WriteMessage writes one message, and fds, on conn, then closes its
// writing side.
func WriteMessage(conn *net.UnixConn, body []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(body, oob, nil); err != nil {
		return err
	}
	return conn.CloseWrite()
}

// ReadMessage reads one message of at most MaxMessage bytes, up to its
// writer's end, and the file descriptors that came with its first part
// (at most one is kept: the others are closed).
func ReadMessage(conn *net.UnixConn) (body []byte, fd *os.File, err error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	if oobn > 0 {
		fd, err = takeFD(oob[:oobn])
		if err != nil {
			return nil, nil, err
		}
	}
	body = buf[:n]
	for err == nil && len(body) <= MaxMessage {
		m, rerr := conn.Read(buf[len(body):cap(buf)])
		body = buf[:len(body)+m]
		if rerr != nil {
			err = rerr
		}
	}
	if len(body) > MaxMessage {
		closeFile(fd)
		return nil, nil, fmt.Errorf("a message of more than %d bytes", MaxMessage)
	}
	if !errors.Is(err, io.EOF) {
		closeFile(fd)
		return nil, nil, err
	}
	return body, fd, nil
}

// takeFD keeps the first descriptor of a control message and closes the
// others.
func takeFD(oob []byte) (*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var keep *os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if keep == nil {
				keep = os.NewFile(uintptr(fd), "netns")
				continue
			}
			_ = unix.Close(fd)
		}
	}
	return keep, nil
}

func closeFile(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

package meshnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/cni"
)

// podWait bounds how long an ADD waits for the API server to show the
// agent the pod (kubelet creates the sandbox of a pod it has just been
// given; the agent's watch may be a moment behind).
const podWait = 10 * time.Second

// maxPluginCalls bounds the plugin's calls served at once; more wait.
const maxPluginCalls = 16

// ServeCNI serves the chained plugin on the unix socket at path (in a
// directory only root may enter) until ctx ends.
func (n *Node) ServeCNI(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("meshnode: the plugin's socket: %w", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil { //nolint:gosec // a directory: root's only, 0700 to be entered
		return fmt.Errorf("meshnode: the plugin's socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("meshnode: the plugin's socket: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("meshnode: the plugin's socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("meshnode: the plugin's socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	n.cfg.Log.Info("serving the CNI plugin", "socket", path)
	sem := make(chan struct{}, maxPluginCalls)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("meshnode: the plugin's socket: %w", err)
		}
		conn, ok := c.(*net.UnixConn)
		if !ok {
			_ = c.Close()
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.servePlugin(ctx, conn)
		})
	}
}

// servePlugin answers one call of the plugin.
func (n *Node) servePlugin(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close() //nolint:errcheck // answered
	_ = conn.SetDeadline(time.Now().Add(podWait + 50*time.Second))
	body, nsFile, err := cni.ReadMessage(conn)
	var reply cni.Reply
	var req cni.Request
	switch {
	case err != nil:
		reply.Error = "reading the plugin's request: " + err.Error()
	case json.Unmarshal(body, &req) != nil:
		reply.Error = "the plugin's request is not JSON"
	default:
		if err := req.Validate(); err != nil {
			reply.Error = "the plugin's request: " + err.Error()
			break
		}
		if req.Delete {
			n.del(&req) //nolint:contextcheck // letting a pod go bounds its own shutdown
			break
		}
		reply = n.add(ctx, &req, nsFile)
		nsFile = nil // add took it
	}
	if nsFile != nil {
		_ = nsFile.Close()
	}
	if reply.Error != "" {
		n.cfg.Log.Error("refused a pod to the CNI plugin: it will not start until this is fixed", "pod", req.Namespace+"/"+req.Name, "error", reply.Error)
	}
	b, _ := json.Marshal(reply) //nolint:errchkjson // a plain struct
	_ = cni.WriteMessage(conn, b, nil)
}

// add captures the pod of an ADD if its namespace is enrolled.
func (n *Node) add(ctx context.Context, req *cni.Request, nsFile *os.File) cni.Reply {
	if v1alpha1.NeverEnrolled(req.Namespace, v1alpha1.Namespace) {
		closeIf(nsFile)
		return cni.Reply{}
	}
	if enrolled, _ := n.cfg.Enrolled(req.Namespace); !enrolled {
		closeIf(nsFile)
		return cni.Reply{}
	}
	if nsFile == nil {
		return cni.Reply{Enrolled: true, Error: "the plugin sent no network namespace"}
	}
	if t, err := unix.IoctlRetInt(int(nsFile.Fd()), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		_ = nsFile.Close()
		return cni.Reply{Enrolled: true, Error: "what the plugin sent is not a network namespace"}
	}
	pod, err := n.waitPod(ctx, types.UID(req.UID), podWait)
	if err != nil {
		_ = nsFile.Close()
		return cni.Reply{Enrolled: true, Error: err.Error()}
	}
	if pod.Namespace != req.Namespace || pod.Name != req.Name {
		_ = nsFile.Close()
		return cni.Reply{Enrolled: true, Error: fmt.Sprintf("pod UID %s is %s/%s, not %s/%s", req.UID, pod.Namespace, pod.Name, req.Namespace, req.Name)}
	}
	_, mode := n.cfg.Enrolled(req.Namespace)
	if err := n.capture(pod, nsFile, req.IPs, req.Gateways, mode); err != nil { //nolint:contextcheck // see del
		return cni.Reply{Enrolled: true, Error: err.Error()}
	}
	return cni.Reply{Enrolled: true}
}

// del lets go the pod of a DEL.
func (n *Node) del(req *cni.Request) {
	n.mu.Lock()
	e := n.pods[types.UID(req.UID)]
	n.mu.Unlock()
	if e != nil && e.namespace == req.Namespace && e.name == req.Name {
		n.let(e, false)
	}
}

func closeIf(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

package cni_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kzero.dev/kzero/internal/cni"
)

// socketPair is both ends of a connected unix stream socket, without a
// file on disk: cheaper than connPair for a fuzz target.
func socketPair(t testing.TB) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close() //nolint:errcheck // FileConn holds a duplicate
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c.(*net.UnixConn)
	}
	a, b = conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// FuzzReadMessage is what the agent does with what a plugin sends: read
// one message, decode it as a Request and validate it. None of it may
// panic, and what Validate lets through must be what the agent assumes.
func FuzzReadMessage(f *testing.F) {
	// Seeds of every kind are in testdata/fuzz/FuzzReadMessage; these are
	// the edges of the message's size.
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte("x"), cni.MaxMessage))
	f.Add(bytes.Repeat([]byte("x"), cni.MaxMessage+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		plugin, agent := socketPair(t)
		written := make(chan error, 1)
		go func() { written <- cni.WriteMessage(plugin, data, nil) }()
		body, fd, err := cni.ReadMessage(agent)
		_ = agent.Close()
		<-written
		if fd != nil {
			t.Errorf("ReadMessage gave descriptor %d, none was sent", fd.Fd())
			_ = fd.Close()
		}
		switch {
		case len(data) == 0:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("ReadMessage of nothing: %v, want io.EOF", err)
			}
			return
		case len(data) > cni.MaxMessage:
			if err == nil || err.Error() != "a message of more than 16384 bytes" {
				t.Fatalf("ReadMessage of %d bytes: %v, want a refusal", len(data), err)
			}
			return
		case err != nil:
			t.Fatalf("ReadMessage of %d bytes: %v", len(data), err)
		case !bytes.Equal(body, data):
			t.Fatalf("ReadMessage = %q, want %q", body, data)
		}

		var req cni.Request
		if json.Unmarshal(body, &req) != nil {
			return
		}
		if req.Validate() != nil {
			return
		}
		// The agent names files and looks pods up by these: none may walk
		// out of a directory.
		for field, v := range map[string]string{"containerID": req.ContainerID, "namespace": req.Namespace, "name": req.Name} {
			if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\x00") {
				t.Errorf("Validate accepted %s %q", field, v)
			}
		}
		if req.UID == "" || len(req.UID) > 64 || len(req.ContainerID) > 256 || len(req.Netns) > 4096 {
			t.Errorf("Validate accepted an oversized or empty field: %+v", req)
		}
		if len(req.IPs) > 8 || len(req.Gateways) > 8 {
			t.Errorf("Validate accepted %d addresses and %d gateways", len(req.IPs), len(req.Gateways))
		}
		// What the plugin encodes is what the agent decodes.
		var again cni.Request
		if err := json.Unmarshal(cni.Encode(req), &again); err != nil {
			t.Fatalf("Encode of a valid request does not decode: %v", err)
		}
		if !reflect.DeepEqual(emptyAsNil(again), emptyAsNil(req)) {
			t.Errorf("Encode/decode = %+v, want %+v", again, req)
		}
		if err := again.Validate(); err != nil {
			t.Errorf("a valid request, encoded and decoded, is no longer valid: %v", err)
		}
	})
}

// emptyAsNil makes r's empty address lists nil: the two encode alike.
func emptyAsNil(r cni.Request) cni.Request {
	if len(r.IPs) == 0 {
		r.IPs = nil
	}
	if len(r.Gateways) == 0 {
		r.Gateways = nil
	}
	return r
}

// FuzzChain is Chain on whatever the node's .conflist holds: it must not
// panic, and what it writes must be a list ending with the plugin, once,
// that Chain leaves as it is.
func FuzzChain(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		out, changed, err := cni.Chain(data, kzeroEntry)
		if err != nil {
			if out != nil || changed {
				t.Fatalf("Chain failed (%v) but returned %q, %v", err, out, changed)
			}
			return
		}
		var list map[string]any
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("Chain's result is not JSON: %v\n%s", err, out)
		}
		ps, ok := list["plugins"].([]any)
		if !ok || len(ps) == 0 {
			t.Fatalf("Chain's result has no plugins:\n%s", out)
		}
		n := 0
		for _, p := range ps {
			if m, ok := p.(map[string]any); ok && m["type"] == cni.PluginType {
				n++
			}
		}
		if n != 1 {
			t.Errorf("Chain's result holds kzero-cni %d times:\n%s", n, out)
		}
		if last, _ := ps[len(ps)-1].(map[string]any); !reflect.DeepEqual(last, kzeroEntry) {
			t.Errorf("Chain's last plugin = %v, want %v", ps[len(ps)-1], kzeroEntry)
		}
		if !changed {
			var before any
			if err := json.Unmarshal(data, &before); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(before, any(list)) {
				t.Errorf("Chain said nothing changed, but\n%s\nbecame\n%s", data, out)
			}
		}

		again, changed, err := cni.Chain(out, kzeroEntry)
		if err != nil {
			t.Fatalf("Chain of its own result: %v\n%s", err, out)
		}
		if changed {
			t.Errorf("Chain of its own result: changed = true\n%s", out)
		}
		if !bytes.Equal(again, out) {
			t.Errorf("Chain of its own result =\n%s\nwant\n%s", again, out)
		}
	})
}

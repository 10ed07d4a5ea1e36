package csidriver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"kzero.dev/kzero/internal/unixsocket"
)

// CSIVersion is the version of the CSI specification the driver speaks,
// as it tells kubelet.
const CSIVersion = "1.0.0"

// drainTimeout is how long Run waits, once stopped, for calls in flight.
const drainTimeout = 5 * time.Second

// Run serves the CSI services on Endpoint and, once they are served, the
// plugin registration on RegistrationSocket, until ctx ends; then it
// removes both sockets and returns ctx.Err(). It returns early with an
// error if a socket cannot be made, or if kubelet refuses the driver's
// registration (kubelet's reason in the error). Run must be called once.
func (d *Driver) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("csidriver: Run was called twice: make a new Driver")
	}
	csiLis, err := listen(ctx, d.cfg.Endpoint)
	if err != nil {
		return err
	}
	node := grpc.NewServer(serverOptions()...)
	csi.RegisterIdentityServer(node, d)
	csi.RegisterNodeServer(node, d)
	served := make(chan error, 2)
	go func() { served <- serveErr("the CSI socket", node.Serve(csiLis)) }()
	defer stop(node, d.cfg.Log)

	regLis, err := listen(ctx, d.cfg.RegistrationSocket)
	if err != nil {
		return err
	}
	refused := make(chan error, 1)
	reg := grpc.NewServer(serverOptions()...)
	registerapi.RegisterRegistrationServer(reg, &registration{d: d, refused: refused})
	go func() { served <- serveErr("the registration socket", reg.Serve(regLis)) }()
	defer stop(reg, d.cfg.Log)

	d.cfg.Log.Info("serving the CSI driver", "driver", d.cfg.Name, "endpoint", d.cfg.Endpoint,
		"registrationSocket", d.cfg.RegistrationSocket, "sourceDir", d.cfg.SourceDir)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-served:
		return err
	case err := <-refused:
		return err
	}
}

// serverOptions bound what a call may send, and what a connection holds:
// kubelet dials the CSI socket anew for every call, and mounts the
// volumes of the pods that start together at once, so a burst of
// connections each holding grpc-go's default 32 KiB read and write
// buffers would grow the agent's heap by megabytes for a moment. Requests
// are a few hundred bytes; a write borrows a buffer from a pool while it
// lasts.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxRequestMessage), grpc.ReadBufferSize(1024), grpc.SharedWriteBuffer(true)}
}

func serveErr(what string, err error) error {
	if err == nil {
		return fmt.Errorf("csidriver: %s stopped serving", what)
	}
	return fmt.Errorf("csidriver: serve %s: %w", what, err)
}

// stop stops s, letting calls in flight end for drainTimeout; its
// listeners close, which removes their sockets.
func stop(s *grpc.Server, log *slog.Logger) {
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		log.Warn("CSI calls still in flight after the drain timeout: closing their connections", "timeout", drainTimeout)
		s.Stop()
		<-stopped
	}
}

// listen makes the unix socket path, open to its owner (root: kubelet)
// only, making its directory if missing and replacing a socket a previous
// driver left (unixsocket.Listen).
func listen(ctx context.Context, path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("csidriver: the socket's directory: %w", err)
	}
	lis, err := unixsocket.Listen(ctx, path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("csidriver: %w", err)
	}
	return lis, nil
}

// registration is kubelet's plugin registration service: kubelet finds
// its socket in plugins_registry, asks what plugin it is, and says whether
// it took it.
type registration struct {
	registerapi.UnimplementedRegistrationServer
	d       *Driver
	refused chan<- error
}

// GetInfo tells kubelet the driver's name, its CSI socket and version.
func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type: registerapi.CSIPlugin, Name: r.d.cfg.Name, Endpoint: r.d.cfg.Endpoint,
		SupportedVersions: []string{CSIVersion},
	}, nil
}

// NotifyRegistrationStatus hears kubelet's verdict. A refusal stops Run,
// with kubelet's reason: the agent exits, and restarts to try again.
func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.GetPluginRegistered() {
		r.d.cfg.Log.Info("kubelet registered the CSI driver", "driver", r.d.cfg.Name)
		return &registerapi.RegistrationStatusResponse{}, nil
	}
	err := fmt.Errorf("csidriver: kubelet refused to register the CSI driver %s: %s", r.d.cfg.Name, s.GetError())
	select {
	case r.refused <- err:
	default: // a refusal is told already
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

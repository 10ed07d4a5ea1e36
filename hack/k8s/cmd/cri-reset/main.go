// Command cri-reset stops and removes every pod sandbox and container that a
// CRI runtime holds, so that the runtime tears down their network namespaces,
// veths and mounts before it is stopped. The cluster harness runs it on
// cluster-down, after kubelet has stopped.
//
//	cri-reset -endpoint unix:///path/to/containerd.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, unix:///path (required)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "cri-reset: -endpoint is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	n, err := reset(ctx, *endpoint)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-reset: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("cri-reset: removed %d pod sandboxes\n", n)
}

func reset(ctx context.Context, endpoint string) (int, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)

	var errs []error
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.GetContainers() {
		if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.GetId(), Timeout: 0}); err != nil {
			errs = append(errs, fmt.Errorf("stop container %s: %w", c.GetId(), err))
		}
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.GetId(), err))
		}
	}
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pod sandboxes: %w", err)
	}
	for _, p := range pods.GetItems() {
		// StopPodSandbox runs the CNI DEL that removes the pod's veth and
		// its IP; RemovePodSandbox removes its netns mount and state.
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod sandbox %s: %w", p.GetId(), err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod sandbox %s: %w", p.GetId(), err))
		}
	}
	return len(pods.GetItems()), errors.Join(errs...)
}

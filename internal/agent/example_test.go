package agent_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/rest"

	"kzero.dev/kzero/internal/agent"
)

// The agent as `kzero agent` runs it in its pod: the authority's address
// from the Service's environment variables, the token and the bundle
// kubelet projects, the socket the webhook mounts into enrolled pods.
func ExampleNew() {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return
	}
	kube, err := agent.NewKube(cfg)
	if err != nil {
		return
	}
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	a, err := agent.New(agent.Config{
		NodeName:     os.Getenv("NODE_NAME"),
		TrustDomain:  td,
		AuthorityURL: "https://" + os.Getenv("KZERO_AUTHORITY_SERVICE_HOST") + ":" + os.Getenv("KZERO_AUTHORITY_SERVICE_PORT_AGENT"),
		AuthorityID:  spiffeid.RequireFromPath(td, "/ns/kzero-system/sa/kzero-authority"),
		BundleFile:   "/var/run/secrets/kzero.dev/authority/bundle.pem",
		TokenFile:    "/var/run/secrets/kzero.dev/authority/token",
		SocketPath:   "/run/kzero/agent/agent.sock",
		Kube:         kube,
		Log:          slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		return
	}
	_ = a.Run(context.Background()) // until the context ends
}

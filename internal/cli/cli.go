// Package cli is kzero's command line: one cobra command per role and
// tool of the design (authority, agent, gateway, scan, policy, audit,
// status, install, up, version). Commands that are not built yet say so and
// fail; none pretends to work.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"kzero.dev/kzero/internal/agentcmd"
	"kzero.dev/kzero/internal/version"
)

// ErrNotBuilt is returned by commands whose feature is not built yet.
var ErrNotBuilt = errors.New("not built yet")

// New returns the root command, writing to out and errOut.
func New(out, errOut io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "kzero",
		Short: "Zero trust for Kubernetes: workload identity, mutual TLS, least-privilege policy and audit",
		Long: `kzero gives every workload a short-lived SPIFFE identity, authenticates and
authorizes every connection, east-west and north-south, against
least-privilege policy, and audits every decision: no sidecars, and no change
to developers' manifests or code.

One binary plays every role. In a cluster:
  kzero authority   the trust domain's CA and PodCertificateRequest signer
  kzero agent       the node's SPIFFE Workload API and mTLS tunnel (DaemonSet)
  kzero gateway     the north-south gateway (Gateway API, Ingress)
From a person's shell:
  kzero scan, policy, audit, status, install, up, version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.AddCommand(
		versionCommand(),
		authorityCommand(),
		agentcmd.New(),
		notBuilt("gateway", "Run the north-south gateway",
			`Serves Gateway API and Ingress routes, terminates TLS, authenticates end
users (OIDC JWT, client certificates) and forwards to backends over the mesh
with its own SVID, under the same policy as east-west traffic.`),
		notBuilt("scan", "Scan a cluster's zero-trust posture",
			`Checks RBAC, network segmentation, pod security and API server settings of
a cluster and reports what breaks zero trust, with how to fix it.`),
		policyCommand(),
		auditCommand(),
		notBuilt("status", "Show the state of kzero in a cluster",
			`Shows the authority's leader, the CA's rotation schedule, the bundle's
sequence number, enrolled namespaces and the agents' health.`),
		installCommand(),
		notBuilt("up", "Run kzero on one machine, without Kubernetes",
			`Runs the authority and an agent on this machine with a file store and
unix attestation: for trying kzero out, and for VMs and legacy hosts.`),
	)
	return root
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kzero's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.Get())
			return err
		},
	}
}

// notBuilt is a command whose feature is not built yet: its help says what
// it will do, and running it says it is not built and fails.
func notBuilt(name, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              short + " (not built yet)",
		Long:               long + "\n\nNot built yet: running it fails.",
		Args:               cobra.ArbitraryArgs,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("%s is %w: see docs/cli.md for what works today", cmd.CommandPath(), ErrNotBuilt)
		},
	}
}

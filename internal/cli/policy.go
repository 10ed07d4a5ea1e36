package cli

import "github.com/spf13/cobra"

func policyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Test, lint and advise on AccessPolicies",
		Long: `Works with kzero's AccessPolicy (kzero.dev/v1alpha1): answer "may A talk to
B?" from a cluster's policies or from files, lint policies offline, and
propose least-privilege policies from observed traffic.`,
	}
	c.AddCommand(
		notBuilt("test", "Decide whether one identity may reach another, and why",
			`Answers "may A talk to B?" with the policy and rule that decide it:
  kzero policy test --from ID --to ID --port N [--method M --path P --claims JSON]`),
		notBuilt("lint", "Check AccessPolicy files offline",
			`Compiles AccessPolicy files with the engine's own compiler and reports
every error with its field path.`),
		notBuilt("advise", "Propose least-privilege policies from observed traffic",
			`Reads audited decisions and proposes AccessPolicies that allow what was
seen and nothing more.`),
	)
	return c
}

package cli

import "github.com/spf13/cobra"

func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Work with kzero's audit trail",
	}
	c.AddCommand(notBuilt("verify", "Verify a hash-chained audit log",
		`Checks that no record of a hash-chained audit file was removed, reordered
or edited, and that its checkpoints are signed by a kzero SVID; names the
first bad record.`))
	return c
}

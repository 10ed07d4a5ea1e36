package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"kzero.dev/kzero/internal/audit"
)

func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Work with kzero's audit trail",
	}
	c.AddCommand(auditVerifyCommand())
	return c
}

func auditVerifyCommand() *cobra.Command {
	var bundleFile, tdName string
	var continues bool
	c := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Verify a hash-chained audit log",
		Long: `Checks that no record of a hash-chained audit file was changed, removed,
inserted or reordered, and that its checkpoints are signed by an SVID of the
trust domain; names the first bad record. Several files are checked as one
chain, in the order given (oldest first, after rotation).

With --bundle (a SPIFFE bundle, JSON, or PEM CA certificates), every
checkpoint's certificate chain must verify against it as an X.509-SVID at
the checkpoint's time. Records after the last checkpoint (the unsigned
tail) are reported: if the file was cut after its last checkpoint, nothing
shows it. Exit status 0 when every file verifies, 1 otherwise.`,
		Example: "  kzero audit verify /var/log/kzero/audit.log --bundle bundle.json",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			td, err := spiffeid.TrustDomainFromString(tdName)
			if err != nil {
				return fmt.Errorf("--trust-domain %q: %w", tdName, err)
			}
			opts := audit.Options{TrustDomain: td, Continues: continues}
			if bundleFile != "" {
				if opts.Bundle, err = loadBundle(bundleFile, td); err != nil {
					return err
				}
			}
			for _, file := range files {
				rep, err := verifyFile(file, opts)
				if err != nil {
					return err
				}
				printReport(cmd.OutOrStdout(), file, rep, bundleFile)
				opts.After, opts.Continues = rep.Last, false
			}
			return nil
		},
	}
	c.Flags().StringVar(&bundleFile, "bundle", "", "trust bundle (SPIFFE bundle JSON, or PEM CA certificates) that must verify every checkpoint's signer")
	c.Flags().StringVar(&tdName, "trust-domain", "cluster.local", "trust domain every checkpoint's signer must belong to")
	c.Flags().BoolVar(&continues, "continues", false, "the first file continues an earlier one that is not given (records cut from its start cannot be detected)")
	return c
}

func verifyFile(file string, opts audit.Options) (audit.Report, error) {
	f, err := os.Open(file) //nolint:gosec // the log to verify is the user's argument
	if err != nil {
		return audit.Report{}, fmt.Errorf("audit verify: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: closing cannot lose data
	rep, err := audit.Verify(f, opts)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", file, err)
	}
	return rep, nil
}

func printReport(w io.Writer, file string, rep audit.Report, bundleFile string) {
	fmt.Fprintf(w, "%s: verified: %d records, %d checkpoints (sequence %d to %d)\n",
		file, rep.Records, rep.Checkpoints, rep.First.Seq+1, rep.Last.Seq)
	for _, id := range rep.Signers {
		fmt.Fprintf(w, "  signed by %s\n", id)
	}
	if rep.BundleChecked {
		fmt.Fprintf(w, "  signers verified against %s\n", bundleFile)
	} else {
		fmt.Fprintln(w, "  signers not checked against a trust bundle: pass --bundle to check they are kzero SVIDs")
	}
	if rep.UnsignedTail > 0 {
		fmt.Fprintf(w, "  unsigned tail: %d records after the last checkpoint, protected by the chain only (head %s)\n", rep.UnsignedTail, rep.Last)
	} else {
		fmt.Fprintf(w, "  ends with a checkpoint (head %s)\n", rep.Last)
	}
}

// loadBundle reads a SPIFFE bundle (JSON) or PEM CA certificates.
func loadBundle(file string, td spiffeid.TrustDomain) (x509bundle.Source, error) {
	data, err := os.ReadFile(file) //nolint:gosec // the bundle is the user's argument
	if err != nil {
		return nil, fmt.Errorf("--bundle: %w", err)
	}
	if b, jerr := spiffebundle.Parse(td, data); jerr == nil {
		if len(b.X509Authorities()) == 0 {
			return nil, fmt.Errorf("--bundle %s: the SPIFFE bundle has no X.509 authorities", file)
		}
		return b, nil
	} else if !bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("--bundle %s: not a SPIFFE bundle: %w", file, jerr)
	}
	b, err := x509bundle.Parse(td, data)
	if err == nil && b.Empty() {
		err = errors.New("no certificates")
	}
	if err != nil {
		return nil, fmt.Errorf("--bundle %s: not PEM CA certificates: %w", file, err)
	}
	return b, nil
}

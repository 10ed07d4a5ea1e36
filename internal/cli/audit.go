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

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/audit"
	"kzero.dev/kzero/internal/install"
)

func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Work with kzero's audit trail",
	}
	c.AddCommand(auditVerifyCommand())
	return c
}

// verifyFlags are the flags of kzero audit verify.
type verifyFlags struct {
	bundleFile, tdName string
	signers            []string
	continues, stream  bool
	allowUnsigned      bool
}

func auditVerifyCommand() *cobra.Command {
	var f verifyFlags
	c := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Verify a hash-chained audit log: a chained file, or a collected stream",
		Long: `Checks that no record of a hash-chained audit log was changed, removed,
inserted or reordered, and that its checkpoints are signed by the component
that writes it; names the first bad record. Several files are checked as
one chain, in the order given (oldest first, after rotation).

Who signed: every checkpoint must be signed by a --signer (by default the
authority, spiffe://<--trust-domain>/ns/kzero-system/sa/kzero-authority),
and its certificate chain must verify against --bundle (a SPIFFE bundle,
JSON, or PEM CA certificates, such as the ClusterTrustBundle
kzero.dev:identity:<trust-domain>'s spec.trustBundle) as an X.509-SVID at
the checkpoint's time. Without the bundle a checkpoint's certificate
proves nothing: anyone can make one that names the authority.

Every chain must hold a checkpoint, and checkpoints' times must not go
backwards. With --allow-unsigned, a chain with no checkpoint, or a log
checked without --bundle, is accepted: then only the records' chain is
checked, and anyone who rewrites the whole log can recompute it; who wrote
the log is not proven.

With --stream, FILE is a component's output as a log pipeline collected
it (kubectl logs, with or without --timestamps): lines that are not audit
records (the component's own logs) are skipped and counted, and every
start of the component begins a new chain at record 1. A line that starts
as a record ({"schema":"kzero.dev/audit/...) must be a whole one.

Records after the last checkpoint (the unsigned tail) are reported: if the
log was cut after its last checkpoint, nothing shows it. Exit status 0 when
every file verifies, 1 otherwise.`,
		Example: `  kubectl get clustertrustbundle kzero.dev:identity:cluster.local -o jsonpath='{.spec.trustBundle}' > bundle.pem
  kubectl -n kzero-system logs kzero-authority-7d4b9c-x2x9z > authority.log
  kzero audit verify --stream authority.log --bundle bundle.pem
  kzero audit verify audit-1.log audit-2.log --bundle bundle.pem --signer spiffe://cluster.local/kzero/agent/node-a`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			for _, file := range files {
				rep, err := verifyFile(file, opts)
				if err != nil {
					return err
				}
				printReport(cmd.OutOrStdout(), file, rep, f.bundleFile)
				opts.After, opts.Continues, opts.NotBefore = rep.Last, false, rep.LastCheckpoint
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.bundleFile, "bundle", "", "trust bundle (SPIFFE bundle JSON, or PEM CA certificates) that must verify every checkpoint's signer; required unless --allow-unsigned")
	fl.StringVar(&f.tdName, "trust-domain", "cluster.local", "trust domain every checkpoint's signer must belong to")
	fl.StringArrayVar(&f.signers, "signer", nil, "SPIFFE ID that may sign checkpoints: the component that writes the log; repeatable (default spiffe://<trust-domain>/ns/"+v1alpha1.Namespace+"/sa/"+install.Name+", the authority)")
	fl.BoolVar(&f.allowUnsigned, "allow-unsigned", false, "accept a chain with no checkpoint, and a log checked without --bundle: only the records' chain is then checked, which anyone who rewrites the whole log can recompute, so who wrote it is not proven")
	fl.BoolVar(&f.continues, "continues", false, "the first file continues an earlier one that is not given (records cut from its start cannot be detected)")
	fl.BoolVar(&f.stream, "stream", false, "FILE is a collected log stream (kubectl logs output): skip lines that are not audit records, accept --timestamps prefixes and a new chain at each start of the component")
	return c
}

// options checks the flags and makes Verify's options.
func (f verifyFlags) options() (audit.Options, error) {
	td, err := spiffeid.TrustDomainFromString(f.tdName)
	if err != nil {
		return audit.Options{}, fmt.Errorf("--trust-domain %q: %w", f.tdName, err)
	}
	opts := audit.Options{TrustDomain: td, Continues: f.continues, Stream: f.stream, AllowUnsigned: f.allowUnsigned}
	for _, s := range f.signers {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return audit.Options{}, fmt.Errorf("--signer %q: %w", s, err)
		}
		if !id.MemberOf(td) {
			return audit.Options{}, fmt.Errorf("--signer %q: not in --trust-domain %s: give the trust domain too", s, td.Name())
		}
		opts.Signers = append(opts.Signers, id)
	}
	if len(opts.Signers) == 0 {
		id, err := spiffeid.FromSegments(td, "ns", v1alpha1.Namespace, "sa", install.Name)
		if err != nil {
			return audit.Options{}, fmt.Errorf("--trust-domain %q: no default --signer: %w", f.tdName, err)
		}
		opts.Signers = []spiffeid.ID{id}
	}
	switch {
	case f.bundleFile != "":
		if opts.Bundle, err = loadBundle(f.bundleFile, td); err != nil {
			return audit.Options{}, err
		}
	case !f.allowUnsigned:
		return audit.Options{}, fmt.Errorf("--bundle: required: without the trust bundle a checkpoint's certificate proves nothing, as anyone can make one naming %s; "+
			"give the bundle (kubectl get clustertrustbundle %s -o jsonpath='{.spec.trustBundle}' > bundle.pem), or --allow-unsigned to check the records' chain alone",
			opts.Signers[0], v1alpha1.TrustBundleName(td.Name()))
	}
	return opts, nil
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
	if len(rep.Chains) == 1 {
		fmt.Fprintf(w, "%s: verified: %d records, %d checkpoints (sequence %d to %d)\n",
			file, rep.Records, rep.Checkpoints, rep.First.Seq+1, rep.Last.Seq)
	} else {
		fmt.Fprintf(w, "%s: verified: %d records, %d checkpoints, in %d chains (one for each start of the component)\n",
			file, rep.Records, rep.Checkpoints, len(rep.Chains))
		for i, c := range rep.Chains {
			fmt.Fprintf(w, "  chain %d, lines %d to %d: sequence %d to %d, %s\n", i+1, c.FirstLine, c.LastLine, c.First.Seq+1, c.Last.Seq, chainEnd(c))
		}
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(w, "  %d other lines skipped (not audit records)\n", rep.Skipped)
	}
	for _, id := range rep.Signers {
		fmt.Fprintf(w, "  signed by %s\n", id)
	}
	switch {
	case rep.Checkpoints == 0:
		fmt.Fprintln(w, "  no checkpoint: the records were checked against each other only, and anyone could have written them (--allow-unsigned)")
	case rep.BundleChecked:
		fmt.Fprintf(w, "  signers verified against %s\n", bundleFile)
	default:
		fmt.Fprintln(w, "  signers not checked against a trust bundle: anyone could have made their certificates (--allow-unsigned)")
	}
	if rep.UnsignedTail > 0 {
		fmt.Fprintf(w, "  unsigned tail: %d records after the last checkpoint, protected by the chain only (head %s)\n", rep.UnsignedTail, rep.Last)
	} else {
		fmt.Fprintf(w, "  ends with a checkpoint (head %s)\n", rep.Last)
	}
}

// chainEnd says how a chain of a stream ends.
func chainEnd(c audit.ChainReport) string {
	switch {
	case c.Checkpoints == 0:
		return "no checkpoint"
	case c.UnsignedTail > 0:
		return fmt.Sprintf("%d records after its last checkpoint", c.UnsignedTail)
	}
	return "ends with a checkpoint"
}

// loadBundle reads a SPIFFE bundle (JSON) or PEM CA certificates.
func loadBundle(file string, td spiffeid.TrustDomain) (x509bundle.Source, error) {
	data, err := readSmallFile(file, maxBundleFile, "a trust bundle")
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

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policy"
	"kzero.dev/kzero/internal/policysync"
)

// Labels on namespaces that enrol them, and choose audit mode.
const (
	enrolledLabel = v1alpha1.EnrolledLabel
	modeLabel     = v1alpha1.ModeLabel
)

// exitDenied is `policy test`'s exit status for a denied request.
const exitDenied = 3

func policyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Test, lint and advise on AccessPolicies",
		Long: `Works with kzero's AccessPolicy (kzero.dev/v1alpha1): answer "may A talk to
B?" from a cluster's policies or from files, lint policies offline, and
propose least-privilege policies from observed traffic.`,
	}
	c.AddCommand(policyTestCommand(), policyLintCommand(),
		notBuilt("advise", "Propose least-privilege policies from observed traffic",
			`Reads audited decisions and proposes AccessPolicies that allow what was
seen and nothing more.`),
	)
	return c
}

func policyLintCommand() *cobra.Command {
	var td string
	c := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check AccessPolicy files offline",
		Long: `Parses AccessPolicy files (YAML or JSON, several documents per file) strictly
and compiles them with the engine's own compiler, CEL conditions and their
cost included. Every problem is printed with its policy and field path.
Exit status 0 when every policy compiles, 1 otherwise.

` + policyLimitsHelp(),
		Example: "  kzero policy lint policies/*.yaml",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			trust, err := spiffeid.TrustDomainFromString(td)
			if err != nil {
				return fmt.Errorf("--trust-domain %q: %w", td, err)
			}
			ps, err := readPolicyFiles(args)
			if err != nil {
				return err
			}
			e, err := policy.Compile(ps, policy.Options{TrustDomain: trust})
			out := cmd.OutOrStdout()
			if err != nil {
				broken := map[string]bool{}
				for _, p := range e.Problems() {
					fmt.Fprintln(out, p.Error())
					broken[p.Namespace+"/"+p.Name] = true
				}
				return fmt.Errorf("%d problem(s) in %d of %d policies", len(e.Problems()), len(broken), len(ps))
			}
			fmt.Fprintf(out, "%d policies, %d rules: OK\n", len(ps), e.Rules())
			return nil
		},
	}
	c.Flags().StringVar(&td, "trust-domain", "cluster.local", "the cluster's SPIFFE trust domain")
	return c
}

// testFlags are the flags of `policy test`.
type testFlags struct {
	from, to, trustDomain   string
	port                    int32
	method, path, host      string
	labels, headers         []string
	issuer, subject, claims string
	files                   []string
	kubeconfig              string
	auditNamespace, json    bool
}

func policyTestCommand() *cobra.Command {
	var f testFlags
	c := &cobra.Command{
		Use:   "test --from ID --to ID --port N",
		Short: "Decide whether one identity may reach another, and why",
		Long: `Answers "may A talk to B?" with the decision of kzero's policy engine and the
policy and rule that made it (or "no rule matched: default deny").

The policies come from files (-f, repeatable) or, without -f, from the
cluster of the current kubeconfig: its AccessPolicies, the enrollment labels
of its namespaces (kzero.dev/enrolled=true, kzero.dev/mode=audit) and the
labels of the destination's pods.

--to is the destination workload's SPIFFE ID,
spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. Without
--method, --path or --host the request is plain TCP.

Exit status: 0 allowed, 3 denied, 1 on error.

` + policyLimitsHelp(),
		Example: `  kzero policy test --from spiffe://cluster.local/ns/web/sa/frontend \
    --to spiffe://cluster.local/ns/shop/sa/cart --port 8080 --method GET --path /api/items -f policies.yaml
  kzero policy test --from spiffe://cluster.local/ns/gateway/sa/gw --to spiffe://cluster.local/ns/shop/sa/cart \
    --port 8080 --method GET --path / --issuer https://idp.example --subject ann --claims '{"groups":["admins"]}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPolicyTest(cmd.Context(), cmd.OutOrStdout(), &f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.from, "from", "", "the source's SPIFFE ID (empty: no workload identity)")
	fl.StringVar(&f.to, "to", "", "the destination's SPIFFE ID (required)")
	fl.Int32Var(&f.port, "port", 0, "the destination port (required)")
	fl.StringVar(&f.method, "method", "", "HTTP method")
	fl.StringVar(&f.path, "path", "", "HTTP path")
	fl.StringVar(&f.host, "host", "", "HTTP host")
	fl.StringArrayVar(&f.headers, "header", nil, "HTTP header name=value (repeatable)")
	fl.StringArrayVar(&f.labels, "label", nil, "a label key=value of the destination's pod (repeatable); from the cluster when not given")
	fl.StringVar(&f.issuer, "issuer", "", "the end user's token issuer")
	fl.StringVar(&f.subject, "subject", "", "the end user's subject")
	fl.StringVar(&f.claims, "claims", "", "the end user's claims, a JSON object")
	fl.StringArrayVarP(&f.files, "file", "f", nil, fmt.Sprintf("a policy file (repeatable, %d MiB at most); without it, the cluster's policies", maxPolicyFile>>20))
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "the cluster's SPIFFE trust domain")
	fl.BoolVar(&f.auditNamespace, "audit-namespace", false, "with -f: the destination namespace is enrolled in audit mode")
	fl.BoolVar(&f.json, "json", false, "print the decision as JSON")
	return c
}

func runPolicyTest(ctx context.Context, out io.Writer, f *testFlags) error {
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain %q: %w", f.trustDomain, err)
	}
	req, err := f.request(td)
	if err != nil {
		return err
	}
	if f.auditNamespace && len(f.files) == 0 {
		return errors.New("--audit-namespace goes with -f: from the cluster, the namespace's kzero.dev/mode label decides")
	}
	opts := policy.Options{TrustDomain: td}
	var ps []v1alpha1.AccessPolicy
	if len(f.files) > 0 {
		if ps, err = readPolicyFiles(f.files); err != nil {
			return err
		}
		mode := v1alpha1.ModeEnforce
		if f.auditNamespace {
			mode = v1alpha1.ModeAudit
		}
		opts.Enrollment = func(string) (v1alpha1.Mode, bool) { return mode, true }
	} else if ps, err = fromCluster(ctx, f, req, &opts); err != nil {
		return err
	}
	e, cerr := policy.Compile(ps, opts)
	if cerr != nil {
		fmt.Fprintf(out, "warning: %v\n", cerr)
	}
	d := e.Decide(req)
	if f.json {
		if err := printDecisionJSON(out, req, d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "%s: %s\n", verdictWord(d), d.Reason())
	}
	if !d.Allowed {
		return &ExitError{Code: exitDenied, Err: errors.New("denied: " + d.Reason()), Quiet: true}
	}
	return nil
}

func verdictWord(d policy.Decision) string {
	if d.Allowed {
		return "allow"
	}
	return "deny"
}

func (f *testFlags) request(td spiffeid.TrustDomain) (*policy.Request, error) {
	to, err := spiffeid.FromString(f.to)
	if err != nil {
		return nil, fmt.Errorf("--to %q is not a SPIFFE ID: %w (write spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)", f.to, err)
	}
	if to.TrustDomain() != td {
		return nil, fmt.Errorf("--to %s is not in trust domain %q: the destination is a workload of this cluster (or set --trust-domain)", to, td.Name())
	}
	ns, sa, ok := splitWorkloadID(to)
	if !ok {
		return nil, fmt.Errorf("--to %s is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", to)
	}
	if f.port < 1 || f.port > 65535 {
		return nil, fmt.Errorf("--port %d: give the destination port, 1 to 65535", f.port)
	}
	r := &policy.Request{Destination: policy.Workload{Namespace: ns, ServiceAccount: sa}, Port: f.port}
	if f.from != "" {
		if r.Source, err = spiffeid.FromString(f.from); err != nil {
			return nil, fmt.Errorf("--from %q is not a SPIFFE ID: %w", f.from, err)
		}
	}
	if f.method != "" || f.path != "" || f.host != "" || len(f.headers) > 0 {
		r.HTTP = true
		r.Method, r.Path, r.Host = strings.ToUpper(f.method), f.path, strings.ToLower(f.host)
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			r.Host = h // policies name hosts without a port
		}
		if r.Path == "" {
			r.Path = "/"
		}
		if r.Headers, err = keyValues("--header", f.headers, true); err != nil {
			return nil, err
		}
	}
	if len(f.labels) > 0 {
		if r.Destination.Labels, err = keyValues("--label", f.labels, false); err != nil {
			return nil, err
		}
	}
	if f.issuer != "" || f.subject != "" || f.claims != "" {
		r.User = &policy.User{Issuer: f.issuer, Subject: f.subject}
		if f.claims != "" {
			if err := json.Unmarshal([]byte(f.claims), &r.User.Claims); err != nil {
				return nil, fmt.Errorf("--claims is not a JSON object: %w", err)
			}
		}
	}
	return r, nil
}

func splitWorkloadID(id spiffeid.ID) (ns, sa string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

func keyValues(flag string, kvs []string, lower bool) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: write key=value", flag, kv)
		}
		if lower {
			k = strings.ToLower(k)
		}
		m[k] = v
	}
	return m, nil
}

// Limits of what `policy lint` and `policy test -f` read. An AccessPolicy
// is a few KB, and etcd stores no object over 1.5 MiB: a file larger than
// maxPolicyFile holds something other than policies (/dev/zero, a log, a
// binary), and reading it whole would only take the machine's memory.
const (
	// maxPolicyFile bounds one policy file.
	maxPolicyFile = 4 << 20
	// maxPolicyFiles bounds all the files of one command together.
	maxPolicyFiles = 16 << 20
)

// policyLimitsHelp says the limits, for the commands' help.
func policyLimitsHelp() string {
	return fmt.Sprintf("A policy file may hold at most %d MiB, and the files of one run %d MiB together.",
		maxPolicyFile>>20, maxPolicyFiles>>20)
}

// readPolicyFiles parses files; a policy in a file without a namespace is
// in "default", as kubectl would apply it. The same policy twice is an
// error: the API server would keep only one of them. Every file is read
// through a limit (maxPolicyFile, and maxPolicyFiles for them all), never
// trusting its size: /dev/zero and pipes have none.
func readPolicyFiles(files []string) ([]v1alpha1.AccessPolicy, error) {
	datas := make([][]byte, len(files))
	left := maxPolicyFiles
	for i, name := range files {
		data, err := readPolicyFile(name, left)
		if err != nil {
			return nil, err
		}
		datas[i], left = data, left-len(data)
	}
	var all []v1alpha1.AccessPolicy
	seen := map[string]string{}
	for f, name := range files {
		ps, err := policy.Parse(datas[f])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("%s holds no AccessPolicy", name)
		}
		for i := range ps {
			if ps[i].Namespace == "" {
				ps[i].Namespace = "default"
			}
			key := ps[i].Namespace + "/" + ps[i].Name
			if prev, dup := seen[key]; dup {
				return nil, fmt.Errorf("policy %s is in %s and again in %s: the cluster would keep only one", key, prev, name)
			}
			seen[key] = name
		}
		all = append(all, ps...)
	}
	return all, nil
}

// readPolicyFile reads the file name, of at most maxPolicyFile bytes and
// at most left, what the files before it left of maxPolicyFiles.
func readPolicyFile(name string, left int) ([]byte, error) {
	f, err := os.Open(name) //nolint:gosec // the policy file is the user's argument
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	defer func() { _ = f.Close() }()
	limit := min(maxPolicyFile, left)
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read policy file: %w", err)
	case len(data) <= limit:
		return data, nil
	case limit == maxPolicyFile:
		return nil, fmt.Errorf("policy file %s is over the limit of %d MiB per file (an AccessPolicy is a few KB): "+
			"check that it is the file you meant, or split it into files of %d MiB at most", name, maxPolicyFile>>20, maxPolicyFile>>20)
	default:
		return nil, fmt.Errorf("policy file %s takes the policy files over the limit of %d MiB for one run: "+
			"give fewer files at a time", name, maxPolicyFiles>>20)
	}
}

// fromCluster reads the cluster's policies, namespaces' enrollment and the
// destination's pod labels.
func fromCluster(ctx context.Context, f *testFlags, req *policy.Request, opts *policy.Options) ([]v1alpha1.AccessPolicy, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to read policies from (%w): give policy files with -f, or a kubeconfig", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster client: %w", err)
	}
	list, err := dyn.Resource(policysync.GVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list AccessPolicies (is kzero installed?): %w", err)
	}
	var ps []v1alpha1.AccessPolicy
	for _, item := range list.Items {
		var p v1alpha1.AccessPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.Object, &p); err != nil {
			return nil, fmt.Errorf("AccessPolicy %s/%s: %w", item.GetNamespace(), item.GetName(), err)
		}
		ps = append(ps, p)
	}
	ns, err := kube.CoreV1().Namespaces().Get(ctx, req.Destination.Namespace, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", req.Destination.Namespace, err)
	}
	enrolled := ns.Labels[enrolledLabel] == "true"
	mode := v1alpha1.ModeEnforce
	if ns.Labels[modeLabel] == "audit" {
		mode = v1alpha1.ModeAudit
	}
	opts.Enrollment = func(name string) (v1alpha1.Mode, bool) { return mode, enrolled && name == ns.Name }
	if req.Destination.Labels == nil {
		// One pod of the destination's service account, not every pod
		// of the namespace (the API server sets every pod's
		// serviceAccountName, "default" when the pod names none).
		pods, err := kube.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.serviceAccountName", req.Destination.ServiceAccount).String(),
			Limit:         1,
		})
		if err != nil {
			return nil, fmt.Errorf("pods of %s: %w", ns.Name, err)
		}
		if len(pods.Items) > 0 {
			req.Destination.Labels = pods.Items[0].Labels
		}
	}
	return ps, nil
}

func printDecisionJSON(out io.Writer, r *policy.Request, d policy.Decision) error {
	v := map[string]any{
		"allowed": d.Allowed, "verdict": d.Verdict.String(), "reason": d.Reason(),
		"source": r.Source.String(), "destination": map[string]any{"namespace": r.Destination.Namespace, "serviceAccount": r.Destination.ServiceAccount},
		"port": r.Port,
	}
	if !d.By.IsZero() {
		v["policy"] = map[string]string{"namespace": d.By.Namespace, "name": d.By.Policy, "rule": d.By.Rule}
	}
	if d.Audit {
		v["audit"] = map[string]string{"verdict": d.AuditVerdict.String(), "namespace": d.AuditBy.Namespace, "policy": d.AuditBy.Policy, "rule": d.AuditBy.Rule}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

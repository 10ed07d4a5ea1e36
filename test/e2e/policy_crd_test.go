//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"kzero.dev/kzero/api/v1alpha1"
	"kzero.dev/kzero/internal/policysync"
)

var (
	crdGVR    = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	policyGVR = policysync.GVR
)

const (
	examplesDir    = "../../docs/examples/policies"
	badPoliciesDir = "testdata/bad-policies"
)

// TestAccessPolicyCRD applies the AccessPolicy CRD (v1alpha1.CRD), which the
// API server must accept, schema and CEL rules' estimated cost included;
// then it creates every example of docs/examples/policies, which must be
// admitted with Allow and Enforce as defaults, and every malformed policy of
// testdata/bad-policies, which must be refused with the status code and
// message that the file's "# code:" (422 when absent) and "# expect:" lines
// give. Policies are created with fieldValidation=Strict, as kubectl does.
func TestAccessPolicyCRD(t *testing.T) {
	dyn, err := dynamic.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRD(t, dyn)
	ns := namespace(t)
	policies := dyn.Resource(policyGVR).Namespace(ns)
	strict := metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}

	t.Run("discovery", func(t *testing.T) {
		list, err := kube.Client.Discovery().ServerResourcesForGroupVersion(v1alpha1.Group + "/" + v1alpha1.Version)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range list.APIResources {
			names = append(names, r.Name)
			if r.Name != v1alpha1.Resource {
				continue
			}
			if r.Kind != v1alpha1.Kind || !r.Namespaced || !slices.Equal(r.ShortNames, []string{"ap"}) {
				t.Errorf("%s: kind %s, namespaced %v, short names %v; want %s, true, [ap]", r.Name, r.Kind, r.Namespaced, r.ShortNames, v1alpha1.Kind)
			}
		}
		if !slices.Contains(names, v1alpha1.Resource) || !slices.Contains(names, v1alpha1.Resource+"/status") {
			t.Errorf("served resources %v, want %s and %s/status", names, v1alpha1.Resource, v1alpha1.Resource)
		}
	})

	t.Run("examples", func(t *testing.T) {
		files := yamlFiles(t, examplesDir)
		if len(files) < 5 {
			t.Fatalf("%s holds %d examples, want at least 5", examplesDir, len(files))
		}
		for _, file := range files {
			t.Run(filepath.Base(file), func(t *testing.T) {
				obj := readPolicy(t, file)
				wantAction, wantMode := string(v1alpha1.ActionAllow), string(v1alpha1.ModeEnforce)
				if a, ok, _ := unstructured.NestedString(obj.Object, "spec", "action"); ok {
					wantAction = a
				}
				if m, ok, _ := unstructured.NestedString(obj.Object, "spec", "mode"); ok {
					wantMode = m
				}
				obj.SetNamespace(ns)
				created, err := policies.Create(t.Context(), obj, strict)
				if err != nil {
					t.Fatalf("create: %v", err)
				}
				action, _, _ := unstructured.NestedString(created.Object, "spec", "action")
				mode, _, _ := unstructured.NestedString(created.Object, "spec", "mode")
				if action != wantAction || mode != wantMode {
					t.Errorf("created with action %q, mode %q; want %q, %q", action, mode, wantAction, wantMode)
				}
			})
		}
	})

	t.Run("status and printer columns", func(t *testing.T) {
		const name = "cart-allow-frontend"
		p, err := policies.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get the example %s: %v", name, err)
		}
		status := map[string]any{
			"observedGeneration": p.GetGeneration(),
			"conditions": []any{map[string]any{
				"type":               "Ready",
				"status":             "True",
				"observedGeneration": p.GetGeneration(),
				"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
				"reason":             "Compiled",
				"message":            "the policy is in force",
			}},
		}
		if err := unstructured.SetNestedField(p.Object, status, "status"); err != nil {
			t.Fatal(err)
		}
		if _, err := policies.UpdateStatus(t.Context(), p, metav1.UpdateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Fatalf("update status: %v", err)
		}
		table := getTable(t, "/apis/"+v1alpha1.Group+"/"+v1alpha1.Version+"/namespaces/"+ns+"/"+v1alpha1.Resource+"/"+name)
		var cols []string
		for _, c := range table.ColumnDefinitions {
			cols = append(cols, c.Name)
		}
		if want := []string{"Name", "Action", "Mode", "Ready", "Age"}; !slices.Equal(cols, want) {
			t.Fatalf("columns %v, want %v", cols, want)
		}
		if len(table.Rows) != 1 {
			t.Fatalf("%d rows, want 1", len(table.Rows))
		}
		cells := table.Rows[0].Cells
		if len(cells) != 5 || cells[0] != name || cells[1] != "Allow" || cells[2] != "Enforce" || cells[3] != "True" {
			t.Errorf("row %v, want [%s Allow Enforce True <age>]", cells, name)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		files := yamlFiles(t, badPoliciesDir)
		if len(files) < 10 {
			t.Fatalf("%s holds %d malformed policies, want at least 10", badPoliciesDir, len(files))
		}
		for _, file := range files {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
				code, expect := expectations(t, file)
				obj := readPolicy(t, file)
				obj.SetNamespace(ns)
				created, err := policies.Create(t.Context(), obj, strict)
				if err == nil {
					_ = policies.Delete(context.Background(), created.GetName(), metav1.DeleteOptions{})
					t.Fatalf("the API server accepted it; want %d with %q", code, expect)
				}
				var status apierrors.APIStatus
				if !errors.As(err, &status) {
					t.Fatalf("error %v is not an API status", err)
				}
				if got := status.Status().Code; got != code {
					t.Errorf("status code %d, want %d: %v", got, code, err)
				}
				for _, e := range expect {
					if !strings.Contains(err.Error(), e) {
						t.Errorf("message %q does not contain %q", err.Error(), e)
					}
				}
				t.Logf("refused: %v", err)
			})
		}
	})
}

// installCRD creates the AccessPolicy CRD, replacing one that a killed run
// left, waits until the API server serves it, and deletes it when the test
// ends.
func installCRD(t testing.TB, dyn dynamic.Interface) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal(v1alpha1.CRD, &obj); err != nil {
		t.Fatalf("decode the CRD: %v", err)
	}
	crd := &unstructured.Unstructured{Object: obj}
	crds := dyn.Resource(crdGVR)
	if err := deleteCRD(t.Context(), crds, crd.GetName()); err != nil {
		t.Fatal(err)
	}
	if _, err := crds.Create(t.Context(), crd, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		t.Fatalf("the API server refused the CRD: %v", err)
	}
	t.Cleanup(func() {
		if err := deleteCRD(context.Background(), crds, crd.GetName()); err != nil {
			t.Error(err)
		}
	})

	var conds []any
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ = unstructured.NestedSlice(got.Object, "status", "conditions")
		return condition(conds, "Established") && condition(conds, "NamesAccepted"), nil
	})
	if err != nil {
		t.Fatalf("CRD %s is not established: %v; conditions %v", crd.GetName(), err, conds)
	}
	// Established: the API server serves the resource; wait until this
	// client's requests reach it too.
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(policyGVR).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%s is established but not served: %v", crd.GetName(), err)
	}
}

func condition(conds []any, typ string) bool {
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// deleteCRD deletes the CRD, with the custom resources it holds, and waits
// until it is gone. A CRD that is not there is not an error.
func deleteCRD(ctx context.Context, crds dynamic.ResourceInterface, name string) error {
	err := crds.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := crds.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func readPolicy(t *testing.T, file string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	return &unstructured.Unstructured{Object: obj}
}

// expectations reads the comment lines at the top of a malformed policy:
// "# expect: text" (one or more) is what the refusal's message must
// contain, "# code: N" its status code (422 Unprocessable Entity unless
// given).
func expectations(t *testing.T, file string) (int32, []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	code := int32(http.StatusUnprocessableEntity)
	var expect []string
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if e, ok := strings.CutPrefix(line, "# expect: "); ok {
			expect = append(expect, e)
		}
		if c, ok := strings.CutPrefix(line, "# code: "); ok {
			n, err := strconv.ParseInt(c, 10, 32)
			if err != nil {
				t.Fatalf("%s: bad code line %q", file, line)
			}
			code = int32(n)
		}
	}
	if len(expect) == 0 {
		t.Fatalf("%s has no '# expect: ' line at its top: say what the refusal must contain", file)
	}
	return code, expect
}

// getTable gets path as the table that kubectl get prints.
func getTable(t *testing.T, path string) *metav1.Table {
	t.Helper()
	b, err := kube.Client.Discovery().RESTClient().Get().AbsPath(path).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("get %s as a table: %v", path, err)
	}
	var table metav1.Table
	if err := json.Unmarshal(b, &table); err != nil {
		t.Fatalf("decode the table: %v", err)
	}
	return &table
}

package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"kzero.dev/kzero/api/v1alpha1"
)

// maxPolicyDocument bounds one YAML document of a policy file.
const maxPolicyDocument = 1 << 20

// Parse reads AccessPolicies from YAML or JSON: one or more documents
// separated by ---, each an AccessPolicy of kzero.dev/v1alpha1. Decoding is
// strict: unknown or duplicate fields are errors, which name the document.
// Empty documents are skipped.
func Parse(data []byte) ([]v1alpha1.AccessPolicy, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), 4096))
	var out []v1alpha1.AccessPolicy
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("policy: document %d: %w", doc, err)
		}
		if len(raw) > maxPolicyDocument {
			return nil, fmt.Errorf("policy: document %d is %d bytes; at most %d", doc, len(raw), maxPolicyDocument)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return nil, fmt.Errorf("policy: document %d is not valid YAML: %w", doc, err)
		}
		if string(js) == "null" {
			continue
		}
		// Case-sensitive and strict, as the API server decodes: encoding/json
		// would take "Action" for "action".
		var p v1alpha1.AccessPolicy
		strict, err := sigsjson.UnmarshalStrict(js, &p)
		if err != nil {
			return nil, fmt.Errorf("policy: document %d: %w", doc, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("policy: document %d: %w (field names are case-sensitive)", doc, errors.Join(strict...))
		}
		if p.APIVersion != v1alpha1.Group+"/"+v1alpha1.Version || p.Kind != v1alpha1.Kind {
			return nil, fmt.Errorf("policy: document %d is %q %q; want apiVersion %s/%s, kind %s",
				doc, p.APIVersion, p.Kind, v1alpha1.Group, v1alpha1.Version, v1alpha1.Kind)
		}
		if p.Name == "" {
			return nil, fmt.Errorf("policy: document %d has no metadata.name", doc)
		}
		out = append(out, p)
	}
}

// stripComments drops YAML comment lines, to tell an empty document.
func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
		}
	}
	return out
}

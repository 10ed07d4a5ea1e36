package v1alpha1

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

const examplesDir = "../../docs/examples/policies"

// TestExamplesDecodeStrictly decodes every example policy into
// AccessPolicy, refusing unknown and duplicate fields, and checks that
// encoding the result gives the example back, so that a field spelled with
// the wrong case (which encoding/json would accept) fails too.
func TestExamplesDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("%s holds %d example policies, want at least 5", examplesDir, len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var p AccessPolicy
			if err := yaml.UnmarshalStrict(b, &p); err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			if p.APIVersion != Group+"/"+Version || p.Kind != Kind {
				t.Errorf("apiVersion %q, kind %q, want %s/%s, %s", p.APIVersion, p.Kind, Group, Version, Kind)
			}
			if p.Name == "" || p.Namespace == "" {
				t.Errorf("metadata: name %q, namespace %q: an example names both", p.Name, p.Namespace)
			}
			if len(p.Spec.Rules) == 0 {
				t.Error("spec.rules is empty")
			}
			if !bytes.HasPrefix(b, []byte("# ")) {
				t.Error("the file does not start with a comment that explains the policy")
			}

			var want map[string]any
			if err := yaml.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			j, err := json.Marshal(&p)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := yaml.Unmarshal(j, &got); err != nil {
				t.Fatal(err)
			}
			if g, w := prune(got), prune(want); !reflect.DeepEqual(g, w) {
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				t.Errorf("the example does not survive a round trip through AccessPolicy:\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

// prune removes nulls and empty objects, which encoding an AccessPolicy
// adds (metadata.creationTimestamp, status, an empty selector).
func prune(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			e = prune(e)
			if m, ok := e.(map[string]any); e == nil || ok && len(m) == 0 {
				continue
			}
			out[k] = e
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = prune(e)
		}
		return out
	}
	return v
}

// TestCRDNames checks the CRD's identity against the package's constants.
func TestCRDNames(t *testing.T) {
	crd := decodeCRD(t)
	checks := []struct {
		path string
		want any
	}{
		{"apiVersion", "apiextensions.k8s.io/v1"},
		{"kind", "CustomResourceDefinition"},
		{"metadata.name", Resource + "." + Group},
		{"spec.group", Group},
		{"spec.scope", "Namespaced"},
		{"spec.names.kind", Kind},
		{"spec.names.listKind", Kind + "List"},
		{"spec.names.plural", Resource},
		{"spec.names.singular", strings.ToLower(Kind)},
		{"spec.names.shortNames", []any{"ap"}},
	}
	for _, c := range checks {
		if got := lookup(crd, c.path); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %v, want %v", c.path, got, c.want)
		}
	}
	v := version(t, crd)
	if v["name"] != Version || v["served"] != true || v["storage"] != true {
		t.Errorf("version: name %v, served %v, storage %v; want %s, true, true", v["name"], v["served"], v["storage"], Version)
	}
	if _, ok := lookup(v, "subresources.status").(map[string]any); !ok {
		t.Error("the status subresource is not enabled")
	}
	var cols []string
	for _, c := range lookup(v, "additionalPrinterColumns").([]any) {
		cols = append(cols, c.(map[string]any)["name"].(string))
	}
	if want := []string{"Action", "Mode", "Ready", "Age"}; !slices.Equal(cols, want) {
		t.Errorf("printer columns %v, want %v", cols, want)
	}

	spec := lookup(v, "schema.openAPIV3Schema.properties.spec.properties").(map[string]any)
	enums := []struct {
		field string
		enum  []any
		def   any
	}{
		{"action", []any{string(ActionAllow), string(ActionDeny)}, string(ActionAllow)},
		{"mode", []any{string(ModeEnforce), string(ModeAudit)}, string(ModeEnforce)},
	}
	for _, e := range enums {
		s := spec[e.field].(map[string]any)
		if !reflect.DeepEqual(s["enum"], e.enum) || s["default"] != e.def {
			t.Errorf("spec.%s: enum %v, default %v; want %v, %v", e.field, s["enum"], s["default"], e.enum, e.def)
		}
	}
}

// TestCRDSchemaMatchesTypes walks the Go types and the CRD's schema side by
// side, so that they cannot drift: every json field is a property of the
// same type, every property is a field, a field is required exactly when
// its tag lacks omitempty, and every string, list and map below the root
// has a size bound (the API server's CEL cost estimates depend on them).
// It also checks that every CEL rule carries a message.
func TestCRDSchemaMatchesTypes(t *testing.T) {
	schema, ok := lookup(version(t, decodeCRD(t)), "schema.openAPIV3Schema").(map[string]any)
	if !ok {
		t.Fatal("no schema.openAPIV3Schema")
	}
	w := walker{t: t}
	w.check("", reflect.TypeFor[AccessPolicy](), schema)
	if w.fields < 30 {
		t.Errorf("the walk compared only %d fields: it is not descending", w.fields)
	}
}

type walker struct {
	t      *testing.T
	fields int
}

var (
	timeType       = reflect.TypeFor[metav1.Time]()
	objectMetaType = reflect.TypeFor[metav1.ObjectMeta]()
)

func (w *walker) errorf(path, format string, args ...any) {
	w.t.Helper()
	if path == "" {
		path = "(root)"
	}
	w.t.Errorf("schema at %s: "+format, append([]any{path}, args...)...)
}

func (w *walker) check(path string, typ reflect.Type, s map[string]any) {
	w.t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	for i, v := range asList(s["x-kubernetes-validations"]) {
		r, _ := v.(map[string]any)
		if r["rule"] == nil || r["message"] == nil {
			w.errorf(path, "x-kubernetes-validations[%d] needs a rule and a message", i)
		}
	}
	// apiVersion and kind at the root are the API server's to bound.
	bounded := strings.HasPrefix(path, "spec") || strings.HasPrefix(path, "status")
	switch typ {
	case timeType:
		w.want(path, s, "type", "string")
		w.want(path, s, "format", "date-time")
		return
	case objectMetaType:
		w.want(path, s, "type", "object")
		if s["properties"] != nil {
			w.errorf(path, "metadata is the API server's: give it no properties")
		}
		return
	}
	switch typ.Kind() {
	case reflect.String:
		w.want(path, s, "type", "string")
		if bounded && s["maxLength"] == nil && s["enum"] == nil {
			w.errorf(path, "a string needs maxLength or enum")
		}
	case reflect.Int32:
		w.want(path, s, "type", "integer")
		w.want(path, s, "format", "int32")
	case reflect.Int64:
		w.want(path, s, "type", "integer")
		w.want(path, s, "format", "int64")
	case reflect.Slice:
		w.want(path, s, "type", "array")
		if s["maxItems"] == nil {
			w.errorf(path, "a list needs maxItems")
		}
		items, ok := s["items"].(map[string]any)
		if !ok {
			w.errorf(path, "a list needs items")
			return
		}
		w.check(path+"[]", typ.Elem(), items)
	case reflect.Map:
		w.want(path, s, "type", "object")
		if s["maxProperties"] == nil {
			w.errorf(path, "a map needs maxProperties")
		}
		values, ok := s["additionalProperties"].(map[string]any)
		if !ok {
			w.errorf(path, "a map needs additionalProperties")
			return
		}
		w.check(path+"{}", typ.Elem(), values)
	case reflect.Struct:
		w.checkStruct(path, typ, s)
	default:
		w.errorf(path, "the walk does not know Go kind %s (%s): teach it", typ.Kind(), typ)
	}
}

func (w *walker) checkStruct(path string, typ reflect.Type, s map[string]any) {
	w.t.Helper()
	w.want(path, s, "type", "object")
	props, _ := s["properties"].(map[string]any)
	fields := map[string]reflect.StructField{}
	var required []string
	jsonFields(typ, fields, &required)
	for name, f := range fields {
		w.fields++
		sub := join(path, name)
		p, ok := props[name].(map[string]any)
		if !ok {
			w.errorf(sub, "field %s.%s (json %q) has no property in the schema", typ.Name(), f.Name, name)
			continue
		}
		w.check(sub, f.Type, p)
	}
	for name := range props {
		if _, ok := fields[name]; !ok {
			w.errorf(join(path, name), "the property is not a json field of %s", typ)
		}
	}
	var got []string
	for _, r := range asList(s["required"]) {
		got = append(got, r.(string))
	}
	sort.Strings(got)
	sort.Strings(required)
	if !slices.Equal(got, required) {
		w.errorf(path, "required %v, want %v (the fields of %s without omitempty)", got, required, typ)
	}
}

// jsonFields collects the json names of typ's fields, descending into
// inline embedded structs, and the names that lack omitempty.
func jsonFields(typ reflect.Type, fields map[string]reflect.StructField, required *[]string) {
	for f := range typ.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			jsonFields(f.Type, fields, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f
		if !slices.Contains(strings.Split(opts, ","), "omitempty") {
			*required = append(*required, name)
		}
	}
}

func (w *walker) want(path string, s map[string]any, key string, want any) {
	w.t.Helper()
	if s[key] != want {
		w.errorf(path, "%s is %v, want %v", key, s[key], want)
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func decodeCRD(t *testing.T) map[string]any {
	t.Helper()
	var crd map[string]any
	if err := yaml.UnmarshalStrict(CRD, &crd); err != nil {
		t.Fatalf("decode CRD: %v", err)
	}
	return crd
}

func version(t *testing.T, crd map[string]any) map[string]any {
	t.Helper()
	vs, _ := lookup(crd, "spec.versions").([]any)
	if len(vs) != 1 {
		t.Fatalf("spec.versions holds %d versions, want 1", len(vs))
	}
	return vs[0].(map[string]any)
}

// lookup follows a dotted path through nested maps; nil if it leads
// nowhere.
func lookup(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

package cni_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"kzero.dev/kzero/internal/cni"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// readTestdata reads a file of testdata/.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plugins decodes a configuration list and returns its plugins.
func plugins(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatalf("not a configuration list: %v\n%s", err, data)
	}
	return list.Plugins
}

// pluginTypes is the types of a configuration list's plugins, in order.
func pluginTypes(t testing.TB, data []byte) []string {
	t.Helper()
	var types []string
	for _, p := range plugins(t, data) {
		s, _ := p["type"].(string)
		types = append(types, s)
	}
	return types
}

// decode decodes JSON for comparing as values.
func decode(t testing.TB, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	return v
}

// kzeroEntry is an entry as a node whose agent is configured away from the
// defaults would chain.
var kzeroEntry = map[string]any{
	"type":           cni.PluginType,
	"socket":         "/run/kzero/cni/agent.sock",
	"enrolledFile":   "/run/kzero/cni/enrolled",
	"kzeroNamespace": "mesh",
}

func TestChainGolden(t *testing.T) {
	in := readTestdata(t, "bridge.conflist")
	out, changed, err := cni.Chain(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		t.Error("Chain of an unchained list: changed = false")
	}
	golden := filepath.Join("testdata", "bridge.chained.conflist")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "bridge.chained.conflist"); !bytes.Equal(out, want) {
		t.Errorf("Chain =\n%s\nwant (%s; go test -update to rewrite)\n%s", out, golden, want)
	}
}

func TestChain(t *testing.T) {
	bridge := readTestdata(t, "bridge.conflist")
	chained, _, err := cni.Chain(bridge, kzeroEntry)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, chained); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		in          string
		entry       map[string]any
		wantTypes   []string
		wantChanged bool
	}{
		{
			name:        "appends last",
			in:          string(bridge),
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "portmap", "kzero-cni"},
			wantChanged: true,
		},
		{
			name:        "already chained",
			in:          string(chained),
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "portmap", "kzero-cni"},
			wantChanged: false,
		},
		{
			name:        "already chained, formatted otherwise",
			in:          compact.String(),
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "portmap", "kzero-cni"},
			wantChanged: false,
		},
		{
			name: "already chained, keys in another order and numbers spelt otherwise",
			in: `{"plugins": [
				{"type": "ptp", "mtu": 1.45e3},
				{"kzeroNamespace": "mesh", "enrolledFile": "/run/kzero/cni/enrolled", "type": "kzero-cni", "socket": "/run/kzero/cni/agent.sock"}
			], "name": "kindnet", "cniVersion": "0.4.0"}`,
			entry:       kzeroEntry,
			wantTypes:   []string{"ptp", "kzero-cni"},
			wantChanged: false,
		},
		{
			name: "replaces an older entry",
			in: `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
				{"type": "bridge"},
				{"type": "kzero-cni", "socket": "/var/run/kzero.sock"}
			]}`,
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "kzero-cni"},
			wantChanged: true,
		},
		{
			name: "moves an entry that is not last",
			in: `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
				{"type": "bridge"},
				{"kzeroNamespace": "mesh", "enrolledFile": "/run/kzero/cni/enrolled", "type": "kzero-cni", "socket": "/run/kzero/cni/agent.sock"},
				{"type": "portmap", "capabilities": {"portMappings": true}}
			]}`,
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "portmap", "kzero-cni"},
			wantChanged: true,
		},
		{
			name: "keeps one of two",
			in: `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
				{"type": "kzero-cni"},
				{"type": "bridge"},
				{"type": "kzero-cni"}
			]}`,
			entry:       kzeroEntry,
			wantTypes:   []string{"bridge", "kzero-cni"},
			wantChanged: true,
		},
		{
			name:        "no entry fields",
			in:          `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge"}]}`,
			entry:       nil,
			wantTypes:   []string{"bridge", "kzero-cni"},
			wantChanged: true,
		},
		{
			name:        "no entry fields, already chained",
			in:          `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge"}, {"type": "kzero-cni"}]}`,
			entry:       nil,
			wantTypes:   []string{"bridge", "kzero-cni"},
			wantChanged: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := cni.Chain([]byte(tc.in), tc.entry)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			if got := pluginTypes(t, out); !slices.Equal(got, tc.wantTypes) {
				t.Errorf("plugins = %v, want %v", got, tc.wantTypes)
			}
			if !bytes.HasSuffix(out, []byte("}\n")) {
				t.Errorf("Chain's result does not end in a newline: %q", out[max(0, len(out)-10):])
			}

			// Everything but the plugins is kept, and the other plugins
			// as they were.
			before, after := decode(t, []byte(tc.in)).(map[string]any), decode(t, out).(map[string]any)
			for k, v := range before {
				if k != "plugins" && !reflect.DeepEqual(after[k], v) {
					t.Errorf("%s = %v, want %v as it was", k, after[k], v)
				}
			}
			if len(after) != len(before) {
				t.Errorf("top-level fields %v, want those of the input %v", after, before)
			}
			var others []any
			for _, p := range before["plugins"].([]any) {
				if p.(map[string]any)["type"] != cni.PluginType {
					others = append(others, p)
				}
			}
			ps := after["plugins"].([]any)
			if !reflect.DeepEqual(ps[:len(ps)-1], others) {
				t.Errorf("other plugins = %v, want %v", ps[:len(ps)-1], others)
			}
			last := ps[len(ps)-1].(map[string]any)
			want := map[string]any{"type": cni.PluginType}
			for k, v := range tc.entry {
				want[k] = v
			}
			if !reflect.DeepEqual(last, want) {
				t.Errorf("last plugin = %v, want %v", last, want)
			}
		})
	}
}

func TestChainErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{name: "empty", in: "", wantErr: "not JSON: unexpected end of JSON input"},
		{name: "not JSON", in: "this is not json", wantErr: "not JSON: invalid character 'h' in literal true (expecting 'r')"},
		{name: "truncated", in: `{"plugins": [{"type": "bridge"}`, wantErr: "not JSON: unexpected end of JSON input"},
		{name: "an array", in: `[{"type": "bridge"}]`, wantErr: "not JSON: json: cannot unmarshal array into Go value of type map[string]interface {}"},
		{name: "null", in: "null", wantErr: `no "plugins" list: not a network configuration list`},
		{name: "a single plugin's .conf", in: `{"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge"}`, wantErr: `no "plugins" list: not a network configuration list`},
		{name: "empty plugins", in: `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": []}`, wantErr: `no "plugins" list: not a network configuration list`},
		{name: "plugins not a list", in: `{"cniVersion": "1.0.0", "name": "cbr0", "plugins": {"type": "bridge"}}`, wantErr: `no "plugins" list: not a network configuration list`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := cni.Chain([]byte(tc.in), kzeroEntry)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Chain error %v, want %q", err, tc.wantErr)
			}
			if out != nil || changed {
				t.Errorf("Chain failed but returned %q, %v", out, changed)
			}
		})
	}
}

// confDir makes a CNI configuration directory holding files (name to
// content; a name ending in / is a directory).
func confDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if name[len(name)-1] == '/' {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fileID is what changes when a file is written again: its inode (a
// rename puts a new one) and its modification time.
type fileID struct {
	ino   uint64
	mtime time.Time
}

// age sets path's modification time an hour back, so that a rewrite
// shows, and returns its identity.
func age(t testing.TB, path string) fileID {
	t.Helper()
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	return identity(t, path)
}

func identity(t testing.TB, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileID{ino: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime()}
}

func mode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // the test's own file
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInstall(t *testing.T) {
	bridge := readTestdata(t, "bridge.conflist")
	src := filepath.Join(t.TempDir(), "kzero-cni")
	if err := os.WriteFile(src, []byte("\x7fELF the plugin, version 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	etc := confDir(t, map[string]string{"10-bridge.conflist": string(bridge)})
	bin, conf := filepath.Join(binDir, cni.PluginType), filepath.Join(etc, "10-bridge.conflist")

	if err := cni.Install(src, binDir, etc, nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, bin); string(got) != "\x7fELF the plugin, version 1" {
		t.Errorf("installed binary = %q", got)
	}
	if m := mode(t, bin); m != 0o755 {
		t.Errorf("installed binary's mode %v, want -rwxr-xr-x", m)
	}
	if got, want := readFile(t, conf), readTestdata(t, "bridge.chained.conflist"); !bytes.Equal(got, want) {
		t.Errorf("chained configuration =\n%s\nwant\n%s", got, want)
	}
	if m := mode(t, conf); m != 0o644 {
		t.Errorf("configuration's mode %v, want -rw-r--r--", m)
	}

	t.Run("again", func(t *testing.T) {
		binID, confID := age(t, bin), age(t, conf)
		if err := cni.Install(src, binDir, etc, nil); err != nil {
			t.Fatal(err)
		}
		if got := identity(t, bin); got != binID {
			t.Errorf("the binary was written again (%+v, was %+v), though the same", got, binID)
		}
		if got := identity(t, conf); got != confID {
			t.Errorf("the configuration was written again (%+v, was %+v), though already chained", got, confID)
		}
	})
	t.Run("a new binary", func(t *testing.T) {
		if err := os.WriteFile(src, []byte("\x7fELF the plugin, version 2"), 0o600); err != nil {
			t.Fatal(err)
		}
		confID := age(t, conf)
		if err := cni.Install(src, binDir, etc, nil); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, bin); string(got) != "\x7fELF the plugin, version 2" {
			t.Errorf("installed binary = %q, want version 2", got)
		}
		if m := mode(t, bin); m != 0o755 {
			t.Errorf("installed binary's mode %v, want -rwxr-xr-x", m)
		}
		if got := identity(t, conf); got != confID {
			t.Error("the configuration was written again, though already chained")
		}
	})
	t.Run("no temporary files left", func(t *testing.T) {
		for _, dir := range []string{binDir, etc} {
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("%s holds %v", dir, names)
			}
		}
	})
}

func TestInstallPicksTheFirstConflist(t *testing.T) {
	other := `{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "ptp"}]}`
	loopback := `{"cniVersion": "1.0.0", "name": "lo", "type": "loopback"}`
	etc := confDir(t, map[string]string{
		"20-other.conflist":  other,
		"10-bridge.conflist": string(readTestdata(t, "bridge.conflist")),
		"05-dir.conflist/":   "",
		"10-bridge.conf~":    "{",
		"99-loopback.conf":   loopback,
	})
	src := filepath.Join(t.TempDir(), "kzero-cni")
	if err := os.WriteFile(src, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cni.Install(src, t.TempDir(), etc, kzeroEntry); err != nil {
		t.Fatal(err)
	}
	if got := pluginTypes(t, readFile(t, filepath.Join(etc, "10-bridge.conflist"))); !slices.Equal(got, []string{"bridge", "portmap", "kzero-cni"}) {
		t.Errorf("10-bridge.conflist's plugins = %v, want kzero-cni chained", got)
	}
	for name, want := range map[string]string{"20-other.conflist": other, "99-loopback.conf": loopback, "10-bridge.conf~": "{"} {
		if got := readFile(t, filepath.Join(etc, name)); string(got) != want {
			t.Errorf("%s was changed:\n%s", name, got)
		}
	}

	if err := cni.Unchain(etc); err != nil {
		t.Fatal(err)
	}
	if got := pluginTypes(t, readFile(t, filepath.Join(etc, "10-bridge.conflist"))); !slices.Equal(got, []string{"bridge", "portmap"}) {
		t.Errorf("after Unchain, 10-bridge.conflist's plugins = %v, want kzero-cni gone", got)
	}
	if got := readFile(t, filepath.Join(etc, "20-other.conflist")); string(got) != other {
		t.Errorf("Unchain changed 20-other.conflist:\n%s", got)
	}
}

func TestInstallErrors(t *testing.T) {
	bridge := string(readTestdata(t, "bridge.conflist"))
	src := filepath.Join(t.TempDir(), "kzero-cni")
	if err := os.WriteFile(src, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	noConflist := confDir(t, map[string]string{"10-bridge.conf": `{"type": "bridge"}`, "20-dir.conflist/": ""})
	notJSON := confDir(t, map[string]string{"10-bridge.conflist": "{"})
	notList := confDir(t, map[string]string{"10-bridge.conflist": `{"cniVersion": "1.0.0", "name": "cbr0", "type": "bridge"}`})
	missing := filepath.Join(t.TempDir(), "net.d")
	good := confDir(t, map[string]string{"10-bridge.conflist": bridge})
	for _, tc := range []struct {
		name, binary, binDir, confDir, wantErr string
		// random is for an error that ends in a temporary file's name,
		// random: wantErr is its beginning.
		random bool
	}{
		{
			name: "no .conflist", binary: src, binDir: binDir, confDir: noConflist,
			wantErr: "cni: the node's network configuration " + filepath.Join(noConflist, "10-bridge.conf") + " is not a .conflist: kzero-cni chains after the pod network's plugin in a network configuration list (a single-plugin .conf is not supported)",
		},
		{
			name: "no configuration directory", binary: src, binDir: binDir, confDir: missing,
			wantErr: "cni: the node's network configuration: open " + missing + ": no such file or directory",
		},
		{
			name: "not JSON", binary: src, binDir: binDir, confDir: notJSON,
			wantErr: "cni: " + filepath.Join(notJSON, "10-bridge.conflist") + ": not JSON: unexpected end of JSON input",
		},
		{
			name: "not a list", binary: src, binDir: binDir, confDir: notList,
			wantErr: "cni: " + filepath.Join(notList, "10-bridge.conflist") + `: no "plugins" list: not a network configuration list`,
		},
		{
			name: "no binary", binary: filepath.Join(binDir, "gone"), binDir: binDir, confDir: good,
			wantErr: "cni: installing the plugin in " + binDir + ": open " + filepath.Join(binDir, "gone") + ": no such file or directory",
		},
		{
			name: "no bin directory", binary: src, binDir: missing, confDir: good,
			wantErr: "cni: installing the plugin in " + missing + ": open " + missing + "/.kzero-cni-",
			random:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := cni.Install(tc.binary, tc.binDir, tc.confDir, nil)
			if err == nil {
				t.Fatalf("Install: no error, want %q", tc.wantErr)
			}
			got := err.Error()
			if tc.random && strings.HasPrefix(got, tc.wantErr) {
				return
			}
			if got != tc.wantErr {
				t.Errorf("Install error:\n%s\nwant:\n%s", got, tc.wantErr)
			}
		})
	}
	if got := readFile(t, filepath.Join(good, "10-bridge.conflist")); string(got) != bridge {
		t.Errorf("a failed Install changed the configuration:\n%s", got)
	}
}

func TestUnchain(t *testing.T) {
	bridge := readTestdata(t, "bridge.conflist")
	chained := readTestdata(t, "bridge.chained.conflist")
	t.Run("removes the plugin", func(t *testing.T) {
		etc := confDir(t, map[string]string{"10-bridge.conflist": string(chained)})
		conf := filepath.Join(etc, "10-bridge.conflist")
		if err := cni.Unchain(etc); err != nil {
			t.Fatal(err)
		}
		got := readFile(t, conf)
		if !reflect.DeepEqual(decode(t, got), decode(t, bridge)) {
			t.Errorf("Unchain =\n%s\nwant, as JSON,\n%s", got, bridge)
		}
		if m := mode(t, conf); m != 0o644 {
			t.Errorf("mode %v, want -rw-r--r--", m)
		}
		// And Chain puts it back as it was.
		again, changed, err := cni.Chain(got, nil)
		if err != nil || !changed || !bytes.Equal(again, chained) {
			t.Errorf("Chain after Unchain = %v, %v:\n%s\nwant\n%s", changed, err, again, chained)
		}
	})
	t.Run("removes every entry", func(t *testing.T) {
		etc := confDir(t, map[string]string{"10-bridge.conflist": `{"name": "cbr0", "plugins": [{"type": "kzero-cni"}, {"type": "bridge"}, "odd", {"type": "kzero-cni"}]}`})
		if err := cni.Unchain(etc); err != nil {
			t.Fatal(err)
		}
		got := decode(t, readFile(t, filepath.Join(etc, "10-bridge.conflist")))
		want := map[string]any{"name": "cbr0", "plugins": []any{map[string]any{"type": "bridge"}, "odd"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Unchain = %v, want %v", got, want)
		}
	})
	for _, tc := range []struct{ name, content string }{
		{name: "not chained", content: string(bridge)},
		{name: "no plugins", content: `{"cniVersion": "1.0.0", "name": "cbr0"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			etc := confDir(t, map[string]string{"10-bridge.conflist": tc.content})
			conf := filepath.Join(etc, "10-bridge.conflist")
			id := age(t, conf)
			if err := cni.Unchain(etc); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, conf); string(got) != tc.content {
				t.Errorf("Unchain changed a list without the plugin:\n%s", got)
			}
			if got := identity(t, conf); got != id {
				t.Error("Unchain wrote a list without the plugin again")
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		none := confDir(t, map[string]string{"10-bridge.conf": `{"type": "bridge"}`})
		notJSON := confDir(t, map[string]string{"10-bridge.conflist": "{"})
		for dir, want := range map[string]string{
			none:    "cni: the node's network configuration " + filepath.Join(none, "10-bridge.conf") + " is not a .conflist: kzero-cni chains after the pod network's plugin in a network configuration list (a single-plugin .conf is not supported)",
			notJSON: "cni: " + filepath.Join(notJSON, "10-bridge.conflist") + ": not JSON: unexpected end of JSON input",
		} {
			if err := cni.Unchain(dir); err == nil || err.Error() != want {
				t.Errorf("Unchain error %v, want %q", err, want)
			}
		}
	})
}

// A list whose only plugin is kzero-cni is refused (every ADD would fail
// for want of a previous result), and large numbers are kept as written.
func TestChainKeepsTheNetworksOwn(t *testing.T) {
	if _, _, err := cni.Chain([]byte(`{"plugins":[{"type":"kzero-cni"}]}`), nil); err == nil {
		t.Error("a list of kzero-cni alone was chained")
	}
	out, _, err := cni.Chain([]byte(`{"cniVersion":"1.0.0","plugins":[{"type":"bridge","mtu":12345678901234567891}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "12345678901234567891") {
		t.Errorf("the chained list rounded a number:\n%s", out)
	}
}

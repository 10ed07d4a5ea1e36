package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Install puts the plugin's binary, binary, into the node's CNI bin
// directory binDir, and chains the plugin last in the node's network
// configuration: the first .conflist of confDir, by name, as the runtime
// picks it. Both are written whole or not at all, and again only when they
// change: it is safe to call at every start of the agent.
func Install(binary, binDir, confDir string, entry map[string]any) error {
	if err := copyFile(binary, filepath.Join(binDir, PluginType)); err != nil {
		return fmt.Errorf("cni: installing the plugin in %s: %w", binDir, err)
	}
	return rewrite(confDir, "chaining", func(data []byte) ([]byte, bool, error) { return Chain(data, entry) })
}

// Unchain removes the plugin from the node's network configuration (the
// first .conflist of confDir), for when kzero leaves the cluster: pods of
// namespaces that were enrolled start again without it.
func Unchain(confDir string) error {
	return rewrite(confDir, "unchaining", func(data []byte) ([]byte, bool, error) {
		list, err := decodeList(data)
		if err != nil {
			return nil, false, err
		}
		plugins, _ := list["plugins"].([]any)
		kept := withoutPlugin(plugins)
		if len(kept) == len(plugins) {
			return nil, false, nil
		}
		list["plugins"] = kept
		out, err := json.MarshalIndent(list, "", "  ")
		return append(out, '\n'), true, err
	})
}

// rewrite applies change to the node's network configuration, the
// runtime's (primaryConfig), and writes what it returns, whole, when it
// says that changed anything. what names the change in errors.
func rewrite(confDir, what string, change func([]byte) ([]byte, bool, error)) error {
	conf, err := primaryConfig(confDir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(conf) //nolint:gosec // the node's own configuration
	if err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	out, changed, err := change(data)
	if err != nil {
		return fmt.Errorf("cni: %s: %w", conf, err)
	}
	if !changed {
		return nil
	}
	if err := writeFile(conf, out, modeOf(conf)); err != nil {
		return fmt.Errorf("cni: %s the plugin in %s: %w", what, conf, err)
	}
	return nil
}

// withoutPlugin is plugins without kzero-cni's entries.
func withoutPlugin(plugins []any) []any {
	return slices.DeleteFunc(slices.Clone(plugins), func(p any) bool {
		m, ok := p.(map[string]any)
		return ok && m["type"] == PluginType
	})
}

// primaryConfig is the network configuration the runtime uses: the first
// .conf, .conflist or .json of dir by name, as containerd and CRI-O pick
// it. It must be a .conflist: kzero-cni cannot chain into a single-plugin
// .conf, and chaining into a file the runtime does not use would leave
// the pods unprotected.
func primaryConfig(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cni: the node's network configuration: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("cni: no network configuration in %s: kzero-cni chains after the pod network's plugin, which must be installed first", dir)
	}
	slices.Sort(names)
	if !strings.HasSuffix(names[0], ".conflist") {
		return "", fmt.Errorf("cni: the node's network configuration %s is not a .conflist: kzero-cni chains after the pod network's plugin in a network configuration list (a single-plugin .conf is not supported)", filepath.Join(dir, names[0]))
	}
	return filepath.Join(dir, names[0]), nil
}

// Chain returns the configuration list data with entry (whose "type" is
// PluginType) as its last plugin, replacing one already there, and whether
// that changed anything.
func Chain(data []byte, entry map[string]any) ([]byte, bool, error) {
	list, err := decodeList(data)
	if err != nil {
		return nil, false, err
	}
	plugins, ok := list["plugins"].([]any)
	if !ok || len(plugins) == 0 {
		return nil, false, errors.New(`no "plugins" list: not a network configuration list`)
	}
	e := map[string]any{}
	for k, v := range entry {
		e[k] = v
	}
	e["type"] = PluginType
	// Compare as JSON values, so that formatting alone is no change.
	was, _ := json.Marshal(list) //nolint:errchkjson // decoded JSON
	kept := withoutPlugin(plugins)
	if len(kept) == 0 {
		return nil, false, errors.New("no plugin but kzero-cni: it chains after the pod network's plugin, which must come first")
	}
	kept = append(kept, e)
	list["plugins"] = kept
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, false, err
	}
	now, _ := json.Marshal(list) //nolint:errchkjson // decoded JSON
	return append(out, '\n'), !bytes.Equal(was, now), nil
}

// decodeList decodes a network configuration, its numbers as written (no
// float64 rounding of a large integer in the node's configuration).
func decodeList(data []byte) (map[string]any, error) {
	var check map[string]any
	if err := json.Unmarshal(data, &check); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var list map[string]any
	if err := d.Decode(&list); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return list, nil
}

// copyFile copies src to dst through a temporary file and a rename, unless
// dst has the same content. The agent checks every half minute: the
// comparison reads both through small buffers, not megabytes of heap.
func copyFile(src, dst string) error {
	if same, err := sameContent(src, dst); err == nil && same {
		return nil
	}
	data, err := os.ReadFile(src) //nolint:gosec // the agent's own binary
	if err != nil {
		return err
	}
	return writeFile(dst, data, 0o755)
}

// sameContent reports whether files a and b hold the same bytes.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a) //nolint:gosec // the agent's own binary
	if err != nil {
		return false, err
	}
	defer fa.Close()      //nolint:errcheck // read only
	fb, err := os.Open(b) //nolint:gosec // the installed copy of it
	if err != nil {
		return false, err
	}
	defer fb.Close() //nolint:errcheck // read only
	sa, err := fa.Stat()
	if err != nil {
		return false, err
	}
	sb, err := fb.Stat()
	if err != nil || sa.Size() != sb.Size() {
		return false, err
	}
	var ba, bb [32 << 10]byte
	for {
		na, ea := io.ReadFull(fa, ba[:])
		nb, eb := io.ReadFull(fb, bb[:])
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea != nil || eb != nil {
			return errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF), nil
		}
	}
}

// writeFile writes path whole or not at all.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(mode), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// modeOf is the permission bits of path, 0644 if it cannot be read.
func modeOf(path string) os.FileMode {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm()
	}
	return 0o644
}

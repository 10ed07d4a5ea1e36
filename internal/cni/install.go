package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	conf, err := primaryConfig(confDir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(conf) //nolint:gosec // the node's own configuration
	if err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	chained, changed, err := Chain(data, entry)
	if err != nil {
		return fmt.Errorf("cni: %s: %w", conf, err)
	}
	if !changed {
		return nil
	}
	if err := writeFile(conf, chained, 0o644); err != nil {
		return fmt.Errorf("cni: chaining the plugin in %s: %w", conf, err)
	}
	return nil
}

// Unchain removes the plugin from the node's network configuration (the
// first .conflist of confDir), for when kzero leaves the cluster: pods of
// namespaces that were enrolled start again without it.
func Unchain(confDir string) error {
	conf, err := primaryConfig(confDir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(conf) //nolint:gosec // the node's own configuration
	if err != nil {
		return fmt.Errorf("cni: %w", err)
	}
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("cni: %s: not JSON: %w", conf, err)
	}
	plugins, _ := list["plugins"].([]any)
	kept := slices.DeleteFunc(slices.Clone(plugins), func(p any) bool {
		m, ok := p.(map[string]any)
		return ok && m["type"] == PluginType
	})
	if len(kept) == len(plugins) {
		return nil
	}
	list["plugins"] = kept
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(conf, append(out, '\n'), 0o644)
}

// primaryConfig is the network configuration list the runtime uses: the
// first .conflist of dir by name.
func primaryConfig(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("cni: the node's network configuration: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conflist") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("cni: no .conflist in %s: kzero-cni chains after the pod network's plugin, which must be installed first (a single-plugin .conf is not supported)", dir)
	}
	slices.Sort(names)
	return filepath.Join(dir, names[0]), nil
}

// Chain returns the configuration list data with entry (whose "type" is
// PluginType) as its last plugin, replacing one already there, and whether
// that changed anything.
func Chain(data []byte, entry map[string]any) ([]byte, bool, error) {
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, false, fmt.Errorf("not JSON: %w", err)
	}
	plugins, ok := list["plugins"].([]any)
	if !ok || len(plugins) == 0 {
		return nil, false, errors.New(`no "plugins" list: not a network configuration list`)
	}
	e := map[string]any{"type": PluginType}
	for k, v := range entry {
		e[k] = v
	}
	kept := make([]any, 0, len(plugins)+1)
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
			continue
		}
		kept = append(kept, p)
	}
	kept = append(kept, e)
	list["plugins"] = kept
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, false, err
	}
	// Compare as JSON values, so that formatting alone is no change.
	var before any
	_ = json.Unmarshal(data, &before) //nolint:errcheck // parsed above
	was, _ := json.Marshal(before)    //nolint:errchkjson // decoded JSON
	now, _ := json.Marshal(list)      //nolint:errchkjson // decoded JSON
	return append(out, '\n'), !bytes.Equal(was, now), nil
}

// copyFile copies src to dst through a temporary file and a rename, unless
// dst has the same content.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src) //nolint:gosec // the agent's own binary
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) { //nolint:gosec // see above
		return nil
	}
	return writeFile(dst, data, 0o755)
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

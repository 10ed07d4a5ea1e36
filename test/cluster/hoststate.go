package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// HostState lists, by kind, what a cluster could leave on the host:
// "process" (processes of the harness's binaries), "mount", "link",
// "iptables" (rules and chains, both families), "route" and "rule" (IPv4),
// "netns" (named network namespaces), "namespace" (the namespaces that any
// process is in and the machine's PID 1 is not: a node's, a pod's) and
// "cgroup" (the nodes' and kubepods hierarchies).
type HostState map[string][]string

// Snapshot reads the host's state. Processes count when their executable is
// one of the cluster's (Kubernetes, etcd, containerd, its shims, runc, the
// harness's tools) or when their command line names the run directory.
func (h *Harness) Snapshot(ctx context.Context) (HostState, error) {
	s := HostState{}
	var err error
	if s["process"], err = h.processes(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	s["mount"] = parseMountinfo(string(b))
	commands := []struct {
		kind  string
		parse func(string) []string
		cmd   []string
	}{
		{"link", parseLinks, []string{"ip", "-o", "link", "show"}},
		{"route", lines, []string{"ip", "-4", "route", "show", "table", "all"}},
		{"rule", lines, []string{"ip", "-4", "rule", "show"}},
		{"iptables", parseIPTablesSave, []string{"iptables-save"}},
		{"iptables", prefixed("ip6: ", parseIPTablesSave), []string{"ip6tables-save"}},
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c.cmd[0]); err != nil {
			continue // no iptables on a control-plane-only machine
		}
		out, err := exec.CommandContext(ctx, c.cmd[0], c.cmd[1:]...).Output()
		if err != nil {
			return nil, fmt.Errorf("cluster: %s: %w", strings.Join(c.cmd, " "), err)
		}
		s[c.kind] = append(s[c.kind], c.parse(string(out))...)
	}
	if ents, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range ents {
			s["netns"] = append(s["netns"], e.Name())
		}
	}
	s["namespace"] = namespaces()
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/*/kzero-node.*", "/sys/fs/cgroup/kzero-node.*"} {
		m, _ := filepath.Glob(pattern)
		s["cgroup"] = append(s["cgroup"], m...)
	}
	return s, nil
}

// namespaceKinds are the kinds of namespace a node or a pod makes.
var namespaceKinds = []string{"mnt", "net", "pid", "uts", "ipc"}

// namespaces lists, as "net:[4026532001]", every namespace that a process
// is in and the machine's PID 1 is not. A namespace that no process holds
// is gone, unless a mount holds it, which the mounts show.
func namespaces() []string {
	host := map[string]bool{}
	for _, k := range namespaceKinds {
		if l, err := os.Readlink("/proc/1/ns/" + k); err == nil {
			host[l] = true
		}
	}
	seen := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		for _, k := range namespaceKinds {
			l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", k))
			if err == nil && !host[l] {
				seen[l] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// clusterExecutables are the base names of the programs a cluster runs.
var clusterExecutables = map[string]bool{
	"etcd": true, "kube-apiserver": true, "kube-controller-manager": true,
	"kube-scheduler": true, "kubelet": true, "kube-proxy": true, "kubectl": true,
	"containerd": true, "containerd-shim": true, "containerd-shim-runc-v2": true,
	"runc": true, "pause": true, "cri-reset": true, "mkimage": true,
	"nsenter": true, "unshare": true, "tcpdump": true,
}

func (h *Harness) processes() ([]string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	self := fmt.Sprint(os.Getpid())
	var out []string
	for _, e := range ents {
		pid := e.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", pid, "exe"))
		if err != nil {
			continue // a kernel thread, or gone
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if clusterExecutables[filepath.Base(exe)] ||
			strings.HasPrefix(exe, h.CacheDir+"/") ||
			strings.Contains(string(cmdline), h.RunDir) {
			out = append(out, pid+" "+exe)
		}
	}
	return out, nil
}

// Leaks returns what after holds and before did not, as "kind: item",
// sorted.
func Leaks(before, after HostState) []string {
	var leaks []string
	for kind, items := range after {
		had := map[string]bool{}
		for _, it := range before[kind] {
			had[it] = true
		}
		for _, it := range items {
			if !had[it] {
				leaks = append(leaks, kind+": "+it)
			}
		}
	}
	sort.Strings(leaks)
	return leaks
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func prefixed(p string, f func(string) []string) func(string) []string {
	return func(s string) []string {
		items := f(s)
		for i := range items {
			items[i] = p + items[i]
		}
		return items
	}
}

// parseMountinfo returns "mount point fstype" for each line of
// /proc/self/mountinfo.
func parseMountinfo(s string) []string {
	var out []string
	for _, l := range lines(s) {
		f := strings.Fields(l)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, f[4]+" "+f[sep+1])
	}
	return out
}

// parseLinks returns the interface names in `ip -o link show` output.
func parseLinks(s string) []string {
	var out []string
	for _, l := range lines(s) {
		f := strings.SplitN(l, ": ", 3)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		out = append(out, name)
	}
	return out
}

// parseIPTablesSave returns "table rule" for each rule and "table :chain" for
// each chain in iptables-save output, without counters and comments.
func parseIPTablesSave(s string) []string {
	var out []string
	table := ""
	for _, l := range lines(s) {
		switch {
		case strings.HasPrefix(l, "#"), l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":"):
			chain, _, _ := strings.Cut(l, " ")
			out = append(out, table+" "+chain)
		default:
			out = append(out, table+" "+l)
		}
	}
	return out
}

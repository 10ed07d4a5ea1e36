package podattest

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Errors of ParseCgroup, also the kinds of the RefusalErrors Attest
// returns for them.
var (
	// ErrNotInPod: no line of the cgroup file places the process in a
	// pod's cgroup: a process of the host (/, /system.slice/...,
	// /user.slice/...), or of a container kubelet did not start.
	ErrNotInPod = errors.New("podattest: not in a pod")
	// ErrInvalidCgroup: the cgroup file is not in the format of
	// /proc/<pid>/cgroup, or names a pod but no container of it, a cgroup
	// below a container's, pods nested in pods, or two pods or containers
	// on different lines.
	ErrInvalidCgroup = errors.New("podattest: invalid cgroup file")
)

// ContainerRef is where a process runs, as its cgroup names it.
type ContainerRef struct {
	// PodUID is the pod's UID: kubelet names the pod's cgroup after it.
	PodUID types.UID
	// ContainerID is the container runtime's ID of the container, 64
	// lowercase hexadecimal digits, without the runtime's prefix: it is
	// what a container status's containerID holds after "<runtime>://".
	ContainerID string
}

// ParseCgroup reads the content of /proc/<pid>/cgroup and returns the pod
// and container the process is in. Each line is
// hierarchy-ID:controllers:path; the path (in the reader's cgroup
// namespace, so it may begin with "/..") is recognised in the layouts
// kubelet and the container runtimes make:
//
//	cgroupfs driver  /kubepods/besteffort/pod<uid>/<id>
//	                 /kubepods/burstable/pod<uid>/<id>
//	                 /kubepods/pod<uid>/<id>               (Guaranteed)
//	                 /kubepods/.../pod<uid>/crio-<id>      (CRI-O)
//	systemd driver   /kubepods.slice/kubepods-burstable.slice/
//	                   kubepods-burstable-pod<uid with _ for ->.slice/
//	                   cri-containerd-<id>.scope           (or crio-, docker-)
//
// Every line that names a pod must name the same pod and container; lines
// that name none (a v1 controller the runtime does not manage) are
// ignored. The container's cgroup must be the process's own: a cgroup a
// container made below its own is refused.
//
// It returns an error wrapping ErrNotInPod when no line names a pod, and
// one wrapping ErrInvalidCgroup for anything else it cannot read as above.
// The sandbox (pause) process of a pod has a cgroup of this form too: only
// the pod's container statuses tell it apart (Attest does).
func ParseCgroup(data []byte) (ContainerRef, error) {
	text, _ := strings.CutSuffix(string(data), "\n")
	if text == "" {
		return ContainerRef{}, fmt.Errorf("%w: empty", ErrInvalidCgroup)
	}
	var (
		found     ContainerRef
		foundLine int
		notInPod  string // a path that names no pod, for the message
		lastPath  string
		lastRef   ContainerRef
		lastOK    bool
		err       error
	)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		hierarchy, rest, ok1 := strings.Cut(line, ":")
		_, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			return ContainerRef{}, fmt.Errorf("%w: line %d: %q is not hierarchy-ID:controllers:path", ErrInvalidCgroup, n, line)
		}
		if !isDecimal(hierarchy) {
			return ContainerRef{}, fmt.Errorf("%w: line %d: hierarchy ID %q is not a number", ErrInvalidCgroup, n, hierarchy)
		}
		if !strings.HasPrefix(path, "/") {
			return ContainerRef{}, fmt.Errorf("%w: line %d: cgroup path %q does not begin with /", ErrInvalidCgroup, n, path)
		}
		if strings.HasSuffix(path, " (deleted)") {
			return ContainerRef{}, fmt.Errorf("%w: line %d: cgroup %q was deleted: the process has exited", ErrInvalidCgroup, n, path)
		}
		if path != lastPath { // v1 hierarchies mostly share one path: parse it once
			lastPath = path
			lastRef, lastOK, err = parsePath(path)
			if err != nil {
				return ContainerRef{}, fmt.Errorf("%w: line %d: %w", ErrInvalidCgroup, n, err)
			}
		}
		ref, ok := lastRef, lastOK
		if !ok {
			if notInPod == "" || hierarchy == "0" {
				notInPod = path
			}
			continue
		}
		if foundLine != 0 && ref != found {
			return ContainerRef{}, fmt.Errorf("%w: line %d names pod %s container %s, but line %d names pod %s container %s",
				ErrInvalidCgroup, n, ref.PodUID, ref.ContainerID, foundLine, found.PodUID, found.ContainerID)
		}
		if foundLine == 0 {
			found, foundLine = ref, n
		}
	}
	if foundLine == 0 {
		return ContainerRef{}, fmt.Errorf("%w: cgroup %s", ErrNotInPod, notInPod)
	}
	return found, nil
}

// parsePath finds the pod and container in one cgroup path. ok is false
// when the path names no pod.
func parsePath(path string) (ref ContainerRef, ok bool, err error) {
	segs := strings.Split(path[1:], "/")
	pod := -1
	for i := 1; i < len(segs); i++ {
		uid, isPod := podSegment(segs[i-1], segs[i])
		if !isPod {
			continue
		}
		if pod >= 0 {
			return ContainerRef{}, false, fmt.Errorf("cgroup %s nests pod %s in pod %s: pods in pods are not attested", path, uid, ref.PodUID)
		}
		pod, ref.PodUID = i, uid
	}
	if pod < 0 {
		return ContainerRef{}, false, nil
	}
	if pod == len(segs)-1 {
		return ContainerRef{}, false, fmt.Errorf("cgroup %s is pod %s's own, not one of its containers'", path, ref.PodUID)
	}
	id, isContainer := containerSegment(segs[pod+1])
	if !isContainer {
		return ContainerRef{}, false, fmt.Errorf("%q in pod %s is not a container's cgroup: want <64 hex digits>, crio-<id>, or cri-containerd-, crio- or docker-<id>.scope", segs[pod+1], ref.PodUID)
	}
	if pod+2 < len(segs) {
		return ContainerRef{}, false, fmt.Errorf("cgroup %s is below container %s's own: cgroups made inside a container are not attested", path, id)
	}
	ref.ContainerID = id
	return ref, true, nil
}

// qosParents are the cgroupfs names of the cgroups kubelet makes pods'
// cgroups in: kubepods itself for Guaranteed pods, and its QoS classes.
// ".." is the parent as a reader in another cgroup namespace sees it.
var qosParents = []string{"kubepods", "besteffort", "burstable", ".."}

// podSegment reports whether seg, a child of parent, is a pod's cgroup as
// kubelet names it (pkg/kubelet/cm: "pod" + UID, which the systemd driver
// expands to <parent's name>-pod<UID with _ for ->.slice), and the pod's UID.
func podSegment(parent, seg string) (types.UID, bool) {
	if rest, ok := strings.CutPrefix(seg, "pod"); ok {
		uid, ok := parseUID(rest, '-')
		return uid, ok && slices.Contains(qosParents, parent)
	}
	name, ok := strings.CutSuffix(seg, ".slice")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(name, "-pod")
	if i < 0 {
		return "", false
	}
	prefix := name[:i]
	uid, ok := parseUID(name[i+len("-pod"):], '_')
	if !ok || !slices.Contains(strings.Split(prefix, "-"), "kubepods") {
		return "", false
	}
	return uid, parent == ".." || parent == prefix+".slice"
}

// parseUID reads a pod UID as kubelet writes it in a cgroup name: a UUID
// whose groups are separated by sep (the API server's UIDs), or 32
// hexadecimal digits (the UIDs kubelet gives static pods).
func parseUID(s string, sep byte) (types.UID, bool) {
	switch len(s) {
	case 32:
		return types.UID(s), isHex(s)
	case 36:
		b := []byte(s)
		for i, c := range b {
			switch i {
			case 8, 13, 18, 23:
				if c != sep {
					return "", false
				}
				b[i] = '-'
			default:
				if !isHexDigit(c) {
					return "", false
				}
			}
		}
		return types.UID(b), true
	default:
		return "", false
	}
}

// containerSegment reports whether seg is a container's cgroup as the
// runtimes name it, and the container's ID: <id> (containerd, Docker) or
// crio-<id> (CRI-O) with the cgroupfs driver, <runtime>-<id>.scope with
// systemd's.
func containerSegment(seg string) (string, bool) {
	if isContainerID(seg) {
		return seg, true
	}
	if id, ok := strings.CutPrefix(seg, "crio-"); ok && isContainerID(id) {
		return id, true
	}
	name, ok := strings.CutSuffix(seg, ".scope")
	if !ok {
		return "", false
	}
	for _, prefix := range []string{"cri-containerd-", "crio-", "docker-"} {
		if id, ok := strings.CutPrefix(name, prefix); ok && isContainerID(id) {
			return id, true
		}
	}
	return "", false
}

func isContainerID(s string) bool { return len(s) == 64 && isHex(s) }

func isHex(s string) bool {
	for i := range len(s) {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

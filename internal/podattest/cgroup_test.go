package podattest

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// A pod and container as a real kubelet (cgroupfs driver, cgroup v1
// hybrid) and containerd named them.
const (
	podUID      = "3a60b6d9-852f-40bc-bfa6-9e8891d96dbe"
	podUIDSD    = "3a60b6d9_852f_40bc_bfa6_9e8891d96dbe" // as the systemd driver escapes it
	containerID = "6f79cfd97bd71200b07eaff6f353f6cd98b4fda4a571f35279ddae1e29924615"
	otherID     = "0c1f6e3bbf7d1c80ad6d3cbb0ce0b33d8a0a6bba3e3c8fcd4a4b2f1d6f3c9a11"
	otherUID    = "9d2b7f1e-1c3a-4e5b-8f6d-2a7c9e0b1d4f"
	staticUID   = "6c0ba1a4b5d1e1d1b0b6f7b6c9a0e2a1"
)

// lines joins cgroup lines as the kernel writes them.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// hybrid is a cgroup file of cgroup v1 hybrid with every hierarchy at path.
func hybrid(path string) string {
	return lines(
		"9:name=systemd:"+path, "8:pids:"+path, "7:blkio:"+path, "6:freezer:"+path, "5:devices:"+path,
		"4:memory:"+path, "3:cpuset:"+path, "2:cpuacct:"+path, "1:cpu:"+path, "0::"+path)
}

func TestParseCgroup(t *testing.T) {
	want := ContainerRef{PodUID: podUID, ContainerID: containerID}
	tests := []struct {
		name    string
		in      string
		want    ContainerRef
		wantErr string
		kind    error
	}{
		// cgroupfs driver
		{name: "v1 hybrid, cgroupfs, BestEffort (a real file)",
			in: hybrid("/kubepods/besteffort/pod" + podUID + "/" + containerID), want: want},
		{name: "v1, cgroupfs, Burstable",
			in: lines("4:memory:/kubepods/burstable/pod"+podUID+"/"+containerID, "1:cpu:/kubepods/burstable/pod"+podUID+"/"+containerID), want: want},
		{name: "v1, cgroupfs, Guaranteed",
			in: lines("4:memory:/kubepods/pod"+podUID+"/"+containerID, "1:cpu:/kubepods/pod"+podUID+"/"+containerID), want: want},
		{name: "v2, cgroupfs",
			in: lines("0::/kubepods/besteffort/pod" + podUID + "/" + containerID), want: want},
		{name: "v2, cgroupfs, CRI-O",
			in: lines("0::/kubepods/burstable/pod" + podUID + "/crio-" + containerID), want: want},
		{name: "v1, cgroupfs, below a cgroup root",
			in: lines("1:cpu:/docker/f00d/kubepods/besteffort/pod" + podUID + "/" + containerID), want: want},
		{name: "v2, cgroupfs, static pod",
			in: lines("0::/kubepods/besteffort/pod" + staticUID + "/" + containerID), want: ContainerRef{PodUID: staticUID, ContainerID: containerID}},

		// systemd driver
		{name: "v2, systemd, containerd, Burstable",
			in:   lines("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope"),
			want: want},
		{name: "v2, systemd, CRI-O, BestEffort",
			in:   lines("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSD + ".slice/crio-" + containerID + ".scope"),
			want: want},
		{name: "v1, systemd, Docker, Guaranteed",
			in: lines(
				"2:memory:/kubepods.slice/kubepods-pod"+podUIDSD+".slice/docker-"+containerID+".scope",
				"1:name=systemd:/kubepods.slice/kubepods-pod"+podUIDSD+".slice/docker-"+containerID+".scope"),
			want: want},
		{name: "v2, systemd, below a cgroup root (a kind node)",
			in:   lines("0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope"),
			want: want},
		{name: "v2, systemd, static pod",
			in:   lines("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + staticUID + ".slice/cri-containerd-" + containerID + ".scope"),
			want: ContainerRef{PodUID: staticUID, ContainerID: containerID}},

		// read from another cgroup namespace
		{name: "cgroup namespace, cgroupfs",
			in: lines("0::/../../burstable/pod" + podUID + "/" + containerID), want: want},
		{name: "cgroup namespace, cgroupfs, parent out of sight",
			in: lines("0::/../../../pod" + podUID + "/" + containerID), want: want},
		{name: "cgroup namespace, systemd",
			in:   lines("0::/../../kubepods-besteffort-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope"),
			want: want},

		// many lines
		{name: "a controller the runtime does not manage",
			in:   lines("11:misc:/", "4:memory:/kubepods/besteffort/pod"+podUID+"/"+containerID, "0::/kubepods/besteffort/pod"+podUID+"/"+containerID),
			want: want},
		{name: "no final newline",
			in: "0::/kubepods/besteffort/pod" + podUID + "/" + containerID, want: want},

		// not in a pod
		{name: "host process, v1 hybrid",
			in:      hybrid("/user.slice/user-0.slice/session-1.scope"),
			wantErr: "podattest: not in a pod: cgroup /user.slice/user-0.slice/session-1.scope", kind: ErrNotInPod},
		{name: "host process, v1 only, first line named",
			in:      lines("4:memory:/system.slice/sshd.service", "1:cpu:/"),
			wantErr: "podattest: not in a pod: cgroup /system.slice/sshd.service", kind: ErrNotInPod},
		{name: "root cgroup",
			in:      lines("0::/"),
			wantErr: "podattest: not in a pod: cgroup /", kind: ErrNotInPod},
		{name: "a system service",
			in:      lines("0::/system.slice/containerd.service"),
			wantErr: "podattest: not in a pod: cgroup /system.slice/containerd.service", kind: ErrNotInPod},
		{name: "a podman container",
			in:      lines("0::/user.slice/user-1000.slice/user@1000.service/user.slice/podman-1234.scope"),
			wantErr: "podattest: not in a pod: cgroup /user.slice/user-1000.slice/user@1000.service/user.slice/podman-1234.scope", kind: ErrNotInPod},
		{name: "a QoS class's own cgroup",
			in:      lines("0::/kubepods/besteffort"),
			wantErr: "podattest: not in a pod: cgroup /kubepods/besteffort", kind: ErrNotInPod},
		{name: "a pod-like cgroup kubelet did not make",
			in:      lines("0::/system.slice/pod" + podUID + "/" + containerID),
			wantErr: "podattest: not in a pod: cgroup /system.slice/pod" + podUID + "/" + containerID, kind: ErrNotInPod},
		{name: "a pod-like slice outside its parent",
			in:      lines("0::/kubepods.slice/kubepods-besteffort-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope"),
			wantErr: "podattest: not in a pod: cgroup /kubepods.slice/kubepods-besteffort-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope", kind: ErrNotInPod},
		{name: "a slice named pod outside kubepods",
			in:      lines("0::/system.slice/system-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope"),
			wantErr: "podattest: not in a pod: cgroup /system.slice/system-pod" + podUIDSD + ".slice/cri-containerd-" + containerID + ".scope", kind: ErrNotInPod},
		{name: "a UID in capitals",
			in:      lines("0::/kubepods/besteffort/pod" + strings.ToUpper(podUID) + "/" + containerID),
			wantErr: "podattest: not in a pod: cgroup /kubepods/besteffort/pod" + strings.ToUpper(podUID) + "/" + containerID, kind: ErrNotInPod},
		{name: "cgroupfs UID in systemd's escape",
			in:      lines("0::/kubepods/besteffort/pod" + podUIDSD + "/" + containerID),
			wantErr: "podattest: not in a pod: cgroup /kubepods/besteffort/pod" + podUIDSD + "/" + containerID, kind: ErrNotInPod},

		// malformed
		{name: "empty", in: "", wantErr: "podattest: invalid cgroup file: empty", kind: ErrInvalidCgroup},
		{name: "one newline", in: "\n", wantErr: "podattest: invalid cgroup file: empty", kind: ErrInvalidCgroup},
		{name: "no fields", in: "kubepods\n",
			wantErr: `podattest: invalid cgroup file: line 1: "kubepods" is not hierarchy-ID:controllers:path`, kind: ErrInvalidCgroup},
		{name: "a blank line", in: "0::/\n\n1:cpu:/\n",
			wantErr: `podattest: invalid cgroup file: line 2: "" is not hierarchy-ID:controllers:path`, kind: ErrInvalidCgroup},
		{name: "hierarchy not a number", in: "x:cpu:/\n",
			wantErr: `podattest: invalid cgroup file: line 1: hierarchy ID "x" is not a number`, kind: ErrInvalidCgroup},
		{name: "relative path", in: "0::kubepods\n",
			wantErr: `podattest: invalid cgroup file: line 1: cgroup path "kubepods" does not begin with /`, kind: ErrInvalidCgroup},
		{name: "deleted cgroup", in: "0::/kubepods/besteffort/pod" + podUID + "/" + containerID + " (deleted)\n",
			wantErr: `podattest: invalid cgroup file: line 1: cgroup "/kubepods/besteffort/pod` + podUID + "/" + containerID + ` (deleted)" was deleted: the process has exited`, kind: ErrInvalidCgroup},
		{name: "a pod's own cgroup", in: "0::/kubepods/besteffort/pod" + podUID + "\n",
			wantErr: "podattest: invalid cgroup file: line 1: cgroup /kubepods/besteffort/pod" + podUID + " is pod " + podUID + "'s own, not one of its containers'", kind: ErrInvalidCgroup},
		{name: "CRI-O's conmon",
			in:      "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podUIDSD + ".slice/crio-conmon-" + containerID + ".scope\n",
			wantErr: `podattest: invalid cgroup file: line 1: "crio-conmon-` + containerID + `.scope" in pod ` + podUID + " is not a container's cgroup: want <64 hex digits>, crio-<id>, or cri-containerd-, crio- or docker-<id>.scope", kind: ErrInvalidCgroup},
		{name: "a short container ID", in: "0::/kubepods/besteffort/pod" + podUID + "/6f79cfd97bd7\n",
			wantErr: `podattest: invalid cgroup file: line 1: "6f79cfd97bd7" in pod ` + podUID + " is not a container's cgroup: want <64 hex digits>, crio-<id>, or cri-containerd-, crio- or docker-<id>.scope", kind: ErrInvalidCgroup},
		{name: "below a container's cgroup", in: "0::/kubepods/besteffort/pod" + podUID + "/" + containerID + "/init\n",
			wantErr: "podattest: invalid cgroup file: line 1: cgroup /kubepods/besteffort/pod" + podUID + "/" + containerID + "/init is below container " + containerID + "'s own: cgroups made inside a container are not attested", kind: ErrInvalidCgroup},
		{name: "a pod in a pod",
			in:      "0::/kubepods/besteffort/pod" + podUID + "/" + containerID + "/kubepods/besteffort/pod" + otherUID + "/" + otherID + "\n",
			wantErr: "podattest: invalid cgroup file: line 1: cgroup /kubepods/besteffort/pod" + podUID + "/" + containerID + "/kubepods/besteffort/pod" + otherUID + "/" + otherID + " nests pod " + otherUID + " in pod " + podUID + ": pods in pods are not attested", kind: ErrInvalidCgroup},
		{name: "lines name two pods",
			in:      lines("4:memory:/kubepods/besteffort/pod"+podUID+"/"+containerID, "0::/kubepods/besteffort/pod"+otherUID+"/"+containerID),
			wantErr: "podattest: invalid cgroup file: line 2 names pod " + otherUID + " container " + containerID + ", but line 1 names pod " + podUID + " container " + containerID, kind: ErrInvalidCgroup},
		{name: "lines name two containers",
			in:      lines("4:memory:/kubepods/besteffort/pod"+podUID+"/"+containerID, "1:cpu:/", "0::/kubepods/besteffort/pod"+podUID+"/"+otherID),
			wantErr: "podattest: invalid cgroup file: line 3 names pod " + podUID + " container " + otherID + ", but line 1 names pod " + podUID + " container " + containerID, kind: ErrInvalidCgroup},
		{name: "an error after a pod", in: lines("0::/kubepods/besteffort/pod"+podUID+"/"+containerID, "1:cpu"),
			wantErr: `podattest: invalid cgroup file: line 2: "1:cpu" is not hierarchy-ID:controllers:path`, kind: ErrInvalidCgroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCgroup([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseCgroup = %+v, want error %q", got, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Errorf("error\n got %s\nwant %s", err, tt.wantErr)
				}
				if !errors.Is(err, tt.kind) {
					t.Errorf("error %v is not %v", err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCgroup: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseCgroup = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The UID of a pod as the systemd driver escapes it comes back as the API
// server wrote it.
func TestParseUID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		sep  byte
		want types.UID
		ok   bool
	}{
		{podUID, '-', podUID, true},
		{podUIDSD, '_', podUID, true},
		{podUIDSD, '-', "", false},
		{podUID, '_', "", false},
		{staticUID, '-', staticUID, true},
		{staticUID[:31], '-', "", false},
		{"3a60b6d9-852f-40bc-bfa6-9e8891d96dbg", '-', "", false},
		{"3a60b6d9-852f-40bc-bfa6-9e8891d96d-e", '-', "", false},
		{"", '-', "", false},
	} {
		got, ok := parseUID(tt.in, tt.sep)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseUID(%q, %q) = %q, %v; want %q, %v", tt.in, tt.sep, got, ok, tt.want, tt.ok)
		}
	}
}

func BenchmarkParseCgroup(b *testing.B) {
	in := []byte(hybrid("/kubepods/besteffort/pod" + podUID + "/" + containerID))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCgroup(in); err != nil {
			b.Fatal(err)
		}
	}
}

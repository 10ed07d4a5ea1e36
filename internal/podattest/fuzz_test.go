package podattest

import (
	"errors"
	"testing"
)

// FuzzParseCgroup: any file is read as a pod's container or refused as
// ErrNotInPod or ErrInvalidCgroup, without a panic; what is read is a valid
// UID and container ID, and reads back the same from the cgroupfs layout.
func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte(hybrid("/kubepods/besteffort/pod" + podUID + "/" + containerID)))
	f.Fuzz(func(t *testing.T, data []byte) {
		ref, err := ParseCgroup(data)
		if err != nil {
			if errors.Is(err, ErrNotInPod) == errors.Is(err, ErrInvalidCgroup) {
				t.Fatalf("error %q is not exactly one of ErrNotInPod and ErrInvalidCgroup", err)
			}
			return
		}
		if !isContainerID(ref.ContainerID) {
			t.Fatalf("container ID %q is not 64 hex digits", ref.ContainerID)
		}
		if uid, ok := parseUID(string(ref.PodUID), '-'); !ok || uid != ref.PodUID {
			t.Fatalf("pod UID %q is not a UID", ref.PodUID)
		}
		again, err := ParseCgroup([]byte("0::/kubepods/burstable/pod" + string(ref.PodUID) + "/" + ref.ContainerID + "\n"))
		if err != nil || again != ref {
			t.Fatalf("%+v written in the cgroupfs layout reads back as %+v, %v", ref, again, err)
		}
	})
}

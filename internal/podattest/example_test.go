package podattest_test

import (
	"errors"
	"fmt"

	"kzero.dev/kzero/internal/podattest"
)

// The cgroup file of a container that kubelet (systemd driver) and
// containerd started, and of a process of the host.
func ExampleParseCgroup() {
	ref, err := podattest.ParseCgroup([]byte("0::/kubepods.slice/kubepods-burstable.slice/" +
		"kubepods-burstable-pod3a60b6d9_852f_40bc_bfa6_9e8891d96dbe.slice/" +
		"cri-containerd-6f79cfd97bd71200b07eaff6f353f6cd98b4fda4a571f35279ddae1e29924615.scope\n"))
	fmt.Println(ref.PodUID, ref.ContainerID, err)

	_, err = podattest.ParseCgroup([]byte("0::/user.slice/user-1000.slice/session-2.scope\n"))
	fmt.Println(errors.Is(err, podattest.ErrNotInPod), err)
	// Output:
	// 3a60b6d9-852f-40bc-bfa6-9e8891d96dbe 6f79cfd97bd71200b07eaff6f353f6cd98b4fda4a571f35279ddae1e29924615 <nil>
	// true podattest: not in a pod: cgroup /user.slice/user-1000.slice/session-2.scope
}

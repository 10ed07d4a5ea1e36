//go:build linux

package csidriver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// publish bind-mounts the directory source at target, read-only, nosuid,
// nodev and noexec, making target (but not its parent) first. A target
// that already holds source read-only is left as it is; one that holds it
// writable is unmounted and published again; one that holds anything else
// is refused.
//
// The mount is made read-only before it is attached: a clone of source's
// mount (open_tree), detached from every tree, gets its attributes
// (mount_setattr), then is moved onto target (move_mount). Kubelet's pods
// directory is shared with the node, so what is attached there propagates
// to kubelet's mount namespace as it is attached; a bind made writable and
// remounted read-only afterwards would reach the node writable, since a
// remount does not propagate. Linux 5.12 or later.
func publish(source, target string) error {
	if err := os.Mkdir(target, 0o750); err != nil && !errors.Is(err, fs.ErrExist) { //nolint:gosec // checkPublish accepted target: kubelet's path for the pod's volume
		return fmt.Errorf("make the target directory: %w", err)
	}
	fi, err := os.Lstat(target) //nolint:gosec // checked, as above
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("target %s is not a directory (%s)", target, fi.Mode().Type())
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return err
	}
	if mounted {
		if err := sameDir(source, target); err != nil {
			return err
		}
		ro, err := readOnly(target)
		if err != nil || ro {
			return err
		}
		// A writable bind of the agent's own directory (never made by
		// publish): undone, and made again read-only.
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s, which holds %s writable: %w", target, source, err)
		}
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("clone the mount of %s: %w", source, err)
	}
	defer func() { _ = unix.Close(tree) }() // a detached tree is freed with its last reference
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("make the clone of %s read-only (mount_setattr: Linux 5.12 or later): %w", source, err)
	}
	// The target is opened without following a symlink put there after
	// the check above, and the mount is moved onto what was opened.
	dst, err := unix.Open(target, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the target %s: %w", target, err)
	}
	defer func() { _ = unix.Close(dst) }()
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the read-only clone of %s at %s: %w", source, target, err)
	}
	return nil
}

// unpublish unmounts whatever is mounted at target and removes the
// directory; a target already gone is no error.
func unpublish(target string) error {
	// A bind made twice (never by publish, which looks first) is two
	// mounts; a few rounds undo what can be.
	for range 4 {
		mounted, err := isMountPoint(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case !mounted:
			if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the target directory: %w", err)
			}
			return nil
		}
		err = unix.Unmount(target, 0)
		if errors.Is(err, unix.EBUSY) {
			// Something of the node still uses it; kubelet has stopped the
			// pod's containers. Detach it now, and the kernel frees it
			// once unused.
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("%s is still a mount point after 4 unmounts", target)
}

// isMountPoint reports whether path is the root of a mount, as the kernel
// tells through statx (Linux 5.8 or later).
func isMountPoint(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &st); err != nil {
		return false, &fs.PathError{Op: "statx", Path: path, Err: err}
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, errors.New("the kernel does not tell mount points (statx's STATX_ATTR_MOUNT_ROOT): the CSI driver needs Linux 5.12 or later")
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// sameDir checks that target, a mount point, shows the directory source.
func sameDir(source, target string) error {
	s, err := os.Stat(source) //nolint:gosec // the driver's own --workload-api-dir
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	t, err := os.Stat(target) //nolint:gosec // checkPublish accepted target
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if !os.SameFile(s, t) {
		return fmt.Errorf("%s is a mount point already, of another directory than %s", target, source)
	}
	return nil
}

// readOnly reports whether the mount at path is read-only.
func readOnly(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st.Flags&unix.ST_RDONLY != 0, nil
}

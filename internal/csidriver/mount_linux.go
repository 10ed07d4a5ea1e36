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
// that already holds source read-only is left as it is; one that holds
// source writable (a publish cut short) is made read-only.
func publish(source, target string) error {
	if err := os.Mkdir(target, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("make the target directory: %w", err)
	}
	fi, err := os.Lstat(target)
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
		if ro, err := readOnly(target); err != nil || ro {
			return err
		}
	} else if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", source, target, err)
	}
	// A bind mount takes the flags of its source; only a remount of the
	// bind makes it read-only, and only that mount.
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		// Never leave the socket's directory writable in a pod.
		if uerr := unix.Unmount(target, unix.MNT_DETACH); uerr != nil {
			return fmt.Errorf("make %s read-only: %w; and unmount it: %w", target, err, uerr)
		}
		return fmt.Errorf("make %s read-only: %w", target, err)
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
		return false, errors.New("the kernel does not tell mount points (statx's STATX_ATTR_MOUNT_ROOT): the CSI driver needs Linux 5.8 or later")
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// sameDir checks that target, a mount point, shows the directory source.
func sameDir(source, target string) error {
	s, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	t, err := os.Stat(target)
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

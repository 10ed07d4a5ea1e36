//go:build !linux

package csidriver

import "errors"

var errNotLinux = errors.New("the CSI driver mounts with Linux's system calls: it runs on Linux only")

func publish(string, string) error { return errNotLinux }

func unpublish(string) error { return errNotLinux }

// Command mkimage writes a single-layer container image holding a static
// binary, its entrypoint, and optionally more binaries beside it, as a
// tarball that `ctr images import` and `docker load` read. It needs no
// Docker engine and no registry.
//
//	mkimage -binary bin/server -tag kzero.local/server:v1 -o server.tar
//	mkimage -binary bin/kzero -also bin/kzero-agent -tag kzero.local/kzero:v1 -o kzero.tar
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the time stamped on every file and on the image, so that the same
// binary always gives the same image digest.
var epoch = time.Unix(0, 0).UTC()

func main() {
	var opts options
	flag.StringVar(&opts.binary, "binary", "", "static binary to put in the image (required)")
	flag.StringVar(&opts.tag, "tag", "", "image reference, e.g. kzero.local/pause:v1 (required)")
	flag.StringVar(&opts.out, "o", "", "output tarball (required)")
	flag.StringVar(&opts.inImage, "path", "", "path of the binary in the image (default /<binary's name>)")
	flag.StringVar(&opts.user, "user", "", "user the image runs as, e.g. 65532:65532 (default root)")
	flag.Func("also", "another static binary to put in the image, at /<its name> (repeatable)", func(f string) error {
		opts.also = append(opts.also, f)
		return nil
	})
	flag.Parse()
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	binary, tag, out, inImage, user string
	also                            []string
}

// file is a file of the layer: its absolute path in the image and its
// contents.
type file struct {
	path     string
	contents []byte
}

func run(o options) error {
	if o.binary == "" || o.tag == "" || o.out == "" {
		return errors.New("-binary, -tag and -o are required (see -h)")
	}
	if o.inImage == "" {
		o.inImage = "/" + filepath.Base(o.binary)
	}
	if !path.IsAbs(o.inImage) {
		return fmt.Errorf("-path %q must be absolute", o.inImage)
	}
	ref, err := name.ParseReference(o.tag)
	if err != nil {
		return fmt.Errorf("parse -tag: %w", err)
	}
	var files []file
	for i, b := range append([]string{o.binary}, o.also...) {
		contents, err := os.ReadFile(b)
		if err != nil {
			return fmt.Errorf("read binary: %w", err)
		}
		p := "/" + filepath.Base(b)
		if i == 0 {
			p = o.inImage
		}
		for _, f := range files {
			if f.path == p {
				return fmt.Errorf("two binaries at %s in the image: give -also binaries distinct names", p)
			}
		}
		files = append(files, file{path: p, contents: contents})
	}
	layerTar, err := tarOf(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	// Edit a copy of the image's own config: it already lists the layer's
	// diff ID, which a config written from scratch would lack.
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{o.inImage}
	cf.Config.User = o.user
	cf.Config.Env = []string{"PATH=/"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	tmp := o.out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	return nil
}

// tarOf returns a tar stream holding the files, executable, and their
// parent directories.
func tarOf(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		dir := ""
		for _, part := range strings.Split(strings.Trim(path.Dir(f.path), "/"), "/") {
			if part == "" {
				continue
			}
			dir += part + "/"
			if dirs[dir] {
				continue
			}
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, fmt.Errorf("write layer: %w", err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.path, "/"), Mode: 0o755, Size: int64(len(f.contents)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
		if _, err := tw.Write(f.contents); err != nil {
			return nil, fmt.Errorf("write layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write layer: %w", err)
	}
	return buf.Bytes(), nil
}

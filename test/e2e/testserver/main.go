// Command testserver is the program in the end-to-end tests' container
// image. It is static and has five modes:
//
//	testserver serve ADDR        serve HTTP on ADDR: /hello answers with the
//	                             pod's name, /healthz with ok
//	testserver fetch URL         GET URL until it answers 200 (60 s at
//	                             most), print the body, exit 0; else exit 1
//	testserver cat FILE          print FILE, then exit 0
//	testserver mark DIR ADDR     write the pod's name to DIR/<its name>,
//	                             print "marked <that file>", then serve
//	                             ADDR as serve does
//	testserver post URL BODY     POST BODY (JSON) to the HTTPS URL once,
//	                             trusting any server certificate, as an
//	                             attacker in a pod would; print "status: N"
//	                             and the answer, exit 0
//
// The tests read what fetch, cat and post print from the pod's log.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 && (len(os.Args) != 4 || (os.Args[1] != "post" && os.Args[1] != "mark")) {
		fmt.Fprintln(os.Stderr, "usage: testserver serve ADDR | fetch URL | cat FILE | mark DIR ADDR | post URL BODY")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "fetch":
		err = fetch(os.Args[2], 60*time.Second)
	case "post":
		err = post(os.Args[2], os.Args[3])
	case "mark":
		host, _ := os.Hostname()
		file := filepath.Join(os.Args[2], host)
		if err = os.WriteFile(file, []byte(host+"\n"), 0o644); err == nil { //nolint:gosec // a file for other pods to look for
			fmt.Println("marked", file)
			err = serve(os.Args[3])
		}
	case "cat":
		var b []byte
		if b, err = os.ReadFile(os.Args[2]); err == nil {
			_, err = os.Stdout.Write(b)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testserver: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		// ctx is done: the shutdown needs a context of its own.
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown) //nolint:contextcheck // ctx is done: the shutdown needs a context of its own
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func fetch(url string, within time.Duration) error {
	client := &http.Client{Timeout: 3 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				_, err = os.Stdout.Write(body)
				return err
			}
			err = fmt.Errorf("%s: %s %w", url, resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			return err
		}
		fmt.Fprintf(os.Stderr, "testserver: %v; retrying\n", err)
		time.Sleep(time.Second)
	}
}

// post sends body to url once and prints the answer.
func post(url, body string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the attacker trusts any server
	}}
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	fmt.Printf("status: %d\n%s\n", resp.StatusCode, answer)
	return nil
}
